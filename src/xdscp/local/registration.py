"""A tiny client for the embedded registry: its Nacos v1 API (the demo's upstreams use it)
and its own instance API (the benchmarks change instances through it)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request


def nacos_call(admin_address: str, method: str, path: str, **params: object) -> str:
    """One Nacos v1 call, e.g. ``nacos_call(addr, "POST", "/nacos/v1/ns/instance", serviceName=...)``."""
    query = urllib.parse.urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})
    req = urllib.request.Request(f"http://{admin_address}{path}?{query}", method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read().decode()


def register(admin_address: str, service: str, ip: str, port: int, *, ephemeral: bool = False) -> None:
    nacos_call(admin_address, "POST", "/nacos/v1/ns/instance", serviceName=service, ip=ip, port=port,
               ephemeral=ephemeral)


def deregister(admin_address: str, service: str, ip: str, port: int, *, ephemeral: bool = False) -> None:
    nacos_call(admin_address, "DELETE", "/nacos/v1/ns/instance", serviceName=service, ip=ip, port=port,
               ephemeral=ephemeral)


def patch_instance(admin_address: str, service: str, host: str, port: int, timeout: float = 30.0,
                   **fields: object) -> None:
    """Change an instance's fields (``healthy=False``, ``weight=2.0``...):
    ``PATCH /v1/services/<service>/instances/<host>:<port>``."""
    req = urllib.request.Request(f"http://{admin_address}/v1/services/{service}/instances/{host}:{port}",
                                 data=json.dumps(fields).encode(), method="PATCH",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=timeout).close()
