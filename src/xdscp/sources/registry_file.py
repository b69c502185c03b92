"""The registry file format (YAML or JSON): a list of services with their instances."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from xdscp.documents import MAX_PROBLEMS, YAML_LOADER, locate, parse_mapping, validation_problems
from xdscp.errors import DocumentError, Problem
from xdscp.gc_pause import gc_paused
from xdscp.model.service import Service, ServiceKey
from xdscp.sources.entry_memo import EntryMemo
from xdscp.sources.yaml_items import Items, split_items


class RegistryFile(BaseModel):
    """``services: [...]``; a service appears once per (namespace, group, name). Checks the
    top level; the services are validated one by one (RegistryReader)."""

    model_config = ConfigDict(extra="forbid")

    services: list[Any] = []


# A file caught between truncation and rewrite reads as empty; serving that would remove
# every service, so emptiness must be said on purpose.
_EMPTY = "the file is empty; write 'services: []' to serve no services"


class RegistryReader:
    """Reads successive versions of one registry file. A version is accepted whole or not
    at all (DocumentError naming the file, line and field of each problem). The services
    that read exactly as in the last accepted version are neither parsed (YAML laid out as
    ``yaml_items`` can cut it) nor validated again."""

    def __init__(self) -> None:
        # keys: "y" + an item's YAML text, or "r" + repr() of a parsed entry
        self._memo: EntryMemo[tuple[Service, ServiceKey]] = EntryMemo()

    def read(self, data: bytes, path: str) -> dict[ServiceKey, Service]:
        """The services by key, in file order."""
        with gc_paused():  # a large file allocates a million objects, freed without it
            return self._read(data, path)

    def _read(self, data: bytes, path: str) -> dict[ServiceKey, Service]:
        if not path.endswith(".json"):
            items = split_items(data.decode("utf-8", errors="replace"))
            if items is not None:
                try:
                    return self._read_items(items, path)
                except _NotAlone:
                    self._memo.discard()  # parsed whole below
        return self._read_whole(data, path)

    def _read_items(self, items: Items, path: str) -> dict[ServiceKey, Service]:
        services: dict[ServiceKey, Service] = {}
        problems: list[Problem] = []
        first_at: dict[ServiceKey, int] = {}
        for i in range(len(items)):
            try:
                svc, key = self._memo.get("y" + items.raw(i), partial(_parse_item, items.parseable(i)))
            except ValidationError as e:
                problems += locate(items.parseable(i), validation_problems(e), prefix=("services", i),
                                   first_line=items.line(i))
            else:
                if key not in first_at:
                    first_at[key] = i
                    services[key] = svc
                else:
                    problems.append(Problem(f"services[{i}]", _twice(key, first_at[key]), items.line(i)))
            if len(problems) >= MAX_PROBLEMS:
                break
        return self._accept(services, sorted(problems, key=lambda p: p.line or 0), path)

    def _read_whole(self, data: bytes, path: str) -> dict[ServiceKey, Service]:
        raw = parse_mapping(data, path, empty=_EMPTY)
        try:
            entries = RegistryFile.model_validate(raw).services
        except ValidationError as e:
            raise DocumentError(path, locate(data, validation_problems(e))) from None
        services: dict[ServiceKey, Service] = {}
        found: list[tuple[tuple[Any, ...], str]] = []
        first_at: dict[ServiceKey, int] = {}
        for i, entry in enumerate(entries):
            try:
                # repr, not ==, tells apart what validation may not treat alike: 2 and 2.0, 1 and true
                svc, key = self._memo.get("r" + repr(entry), partial(_keyed_service, entry))
            except ValidationError as e:
                found += validation_problems(e, ("services", i))
            else:
                if key not in first_at:
                    first_at[key] = i
                    services[key] = svc
                else:
                    found.append((("services", i), _twice(key, first_at[key])))
            if len(found) >= MAX_PROBLEMS:
                break
        return self._accept(services, locate(data, found) if found else [], path)

    def _accept(self, services: dict[ServiceKey, Service], problems: list[Problem],
                path: str) -> dict[ServiceKey, Service]:
        if problems:
            self._memo.discard()
            raise DocumentError(path, problems[:MAX_PROBLEMS])
        self._memo.commit()
        return services


class _NotAlone(Exception):
    """An item that does not parse on its own: the file is parsed whole."""


def _parse_item(text: str) -> tuple[Service, ServiceKey]:
    try:
        entry = yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError:
        raise _NotAlone() from None
    return _keyed_service(entry)


def _twice(key: ServiceKey, first: int) -> str:
    return f"service {key!r} is listed twice (first as services[{first}])"


def _keyed_service(entry: Any) -> tuple[Service, ServiceKey]:
    svc = Service.model_validate(entry)
    return svc, svc.key


def parse_registry_file(data: bytes, path: str) -> list[Service]:
    """Parse and validate one version; raise DocumentError naming the file, field and line."""
    return list(RegistryReader().read(data, path).values())


def write_registry_file(path: Path, services: list[dict[str, Any]]) -> None:
    """Replace a registry file atomically (write aside, rename over), as config tools do,
    so a watcher never reads half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump({"services": services}, sort_keys=False))
    os.replace(tmp, path)
