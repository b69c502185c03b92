"""The control plane's configuration file (YAML), validated with pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from xdscp.cache.node_group import node_grouper
from xdscp.documents import load_document
from xdscp.errors import ConfigError, DocumentError


def split_host_port(address: str) -> tuple[str, int]:
    """'127.0.0.1:18000' or '[::1]:18000' -> (host, port); ValueError otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Address(_Section):
    address: str

    @field_validator("address")
    @classmethod
    def _valid_address(cls, v: str) -> str:
        split_host_port(v)
        return v


class XdsConfig(_Address):
    address: str = "127.0.0.1:18000"
    # How served Clusters/Listeners fetch EDS/RDS: over ADS, or (for bootstraps without
    # ADS) per-type streams to the bootstrap's static cluster ``xds_cluster``.
    config_source: Literal["ads", "grpc", "delta_grpc"] = "ads"
    xds_cluster: str = "xdscp"


class AdminConfig(_Address):
    address: str = "127.0.0.1:19000"


class ListenerConfig(_Section):
    name: str = "ingress_http"
    address: str = "0.0.0.0"
    port: int = Field(default=10000, ge=1, le=65535)
    route_config_name: str | None = None


class FileSourceConfig(_Section):
    kind: Literal["file"]
    name: str | None = None
    path: Path
    poll_interval: float = Field(default=0.02, gt=0, le=60)


SourceConfig = FileSourceConfig


class Config(_Section):
    """Root of the config file; every field has a default, so ``{}`` is a valid config."""

    xds: XdsConfig = XdsConfig()
    admin: AdminConfig = AdminConfig()
    listener: ListenerConfig = ListenerConfig()
    node_group_by: str = "cluster"
    sources: list[SourceConfig] = []

    @field_validator("node_group_by")
    @classmethod
    def _valid_grouping(cls, v: str) -> str:
        try:
            node_grouper(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return v

    def source_names(self) -> list[str]:
        """Each source's name: its own, or ``<kind>-<index>``; names must be unique."""
        names = [s.name or f"{s.kind}-{i}" for i, s in enumerate(self.sources)]
        if len(set(names)) != len(names):
            raise ConfigError(f"source names must be unique: {names}")
        return names


def load_config(path: Path) -> Config:
    """Read and validate a config file; relative source paths are relative to it."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        cfg = load_document(data, str(path), Config)
    except DocumentError as e:
        raise ConfigError(str(e)) from None
    for src in cfg.sources:
        if not src.path.is_absolute():
            src.path = (path.parent / src.path).resolve()
    cfg.source_names()
    return cfg
