"""What one Nacos source runs with (built from its config section by runtime_settings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NacosSettings:
    servers: tuple[str, ...]
    username: str | None
    password: str | None
    access_token: str | None
    namespace: str
    groups: tuple[str, ...]
    api_version: str  # "auto", "v1", "v2" or "v3"
    transport: str  # "http" (polling) or "grpc" (pushes)
    grpc_port: int | None  # None: the HTTP port + 1000
    interval: float
    timeout: float
