"""The registry file format (YAML or JSON): a list of services with their instances."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, model_validator

from xdscp.documents import load_document
from xdscp.model.service import Service


class RegistryFile(BaseModel):
    """``services: [...]``; a service appears once per (namespace, group, name)."""

    model_config = ConfigDict(extra="forbid")

    services: list[Service] = []

    @model_validator(mode="after")
    def _unique_services(self) -> RegistryFile:
        seen = set()
        for svc in self.services:
            if svc.key in seen:
                raise ValueError(f"service {svc.key!r} is listed twice")
            seen.add(svc.key)
        return self


def parse_registry_file(data: bytes, path: str) -> list[Service]:
    """Parse and validate; raise DocumentError naming the file, field and line."""
    return load_document(data, path, RegistryFile, empty=_EMPTY).services


# A file caught between truncation and rewrite reads as empty; serving that would remove
# every service, so emptiness must be said on purpose.
_EMPTY = "the file is empty; write 'services: []' to serve no services"


def write_registry_file(path: Path, services: list[dict[str, Any]]) -> None:
    """Replace a registry file atomically (write aside, rename over), as config tools do,
    so a watcher never reads half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump({"services": services}, sort_keys=False))
    os.replace(tmp, path)
