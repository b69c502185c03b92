"""An in-process control plane on free loopback ports, fed by a registry file unless told
otherwise, and what tests ask of it: its registry's ports and its admin API."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from xdscp.app import ControlPlane
from xdscp.config import Config, EmbeddedSourceConfig, FileSourceConfig, ListenerConfig
from xdscp.model.service import DEFAULT_GROUP, DEFAULT_NAMESPACE, ServiceKey
from xdscp.sources.registry_file import write_registry_file as write_registry


def service(name: str, *ports: int, **fields: Any) -> dict[str, Any]:
    """A registry entry with one 127.0.0.1 instance per port."""
    return {"name": name, "instances": [{"host": "127.0.0.1", "port": p} for p in ports], **fields}


def embedded_source(tmp_path: Path, **settings: Any) -> EmbeddedSourceConfig:
    return EmbeddedSourceConfig(kind="embedded", name="embedded", database=tmp_path / "registry.db", **settings)


class Plane:
    """A running ControlPlane plus the registry file that feeds it."""

    def __init__(self, cp: ControlPlane, registry: Path) -> None:
        self.cp = cp
        self.registry = registry

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.cp.xds_port}"

    def write(self, services: list[dict[str, Any]]) -> None:
        write_registry(self.registry, services)

    def ports(self, name: str = "echo", group: str = DEFAULT_GROUP,
              namespace: str = DEFAULT_NAMESPACE) -> list[int] | None:
        """The sorted ports of a service in the merged registry; None if there is no such service."""
        svc = self.cp.registry.services.get(ServiceKey(namespace, group, name))
        return None if svc is None else sorted(i.port for i in svc.instances)

    async def wait_published(self, count: int, timeout: float = 5.0) -> None:
        """Wait until the publisher has published at least ``count`` snapshots."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.cp.publisher.published < count:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"published {self.cp.publisher.published} < {count}")
            await asyncio.sleep(0.01)

    async def admin(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None, form: dict[str, str] | None = None) -> tuple[int, Any]:
        """Call the admin address: (status, the body as JSON, or as text when it is not JSON).
        ``params`` go in the query string; ``body`` is sent as JSON, ``form`` form-encoded."""
        url = f"http://127.0.0.1:{self.cp.admin_port}{path}"
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data, hdrs["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif form is not None:
            data, hdrs["Content-Type"] = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)

        def call() -> tuple[int, Any]:
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    status, raw = r.status, r.read()
            except urllib.error.HTTPError as e:
                status, raw = e.code, e.read()
            try:
                return status, json.loads(raw)
            except ValueError:
                return status, raw.decode(errors="replace")

        return await asyncio.to_thread(call)

    async def admin_json(self, path: str) -> Any:
        """GET ``path`` on the admin address: (status, JSON body)."""
        return await self.admin("GET", path)


async def start_plane(tmp_path: Path, services: list[dict[str, Any]] | None, **config: Any) -> Plane:
    """A plane fed by a registry file (``services``), unless ``sources=`` says otherwise.
    Prefer ``running_plane``, which stops it; a test that starts one stops it itself."""
    registry = tmp_path / "registry.yaml"
    if services is not None:
        write_registry(registry, services)
    config.setdefault("sources", [FileSourceConfig(kind="file", name="file", path=registry, poll_interval=0.02)])
    config["xds"] = {**config.get("xds", {}), "address": "127.0.0.1:0"}
    config["admin"] = {"address": "127.0.0.1:0", **config.get("admin", {})}
    config.setdefault("listener", ListenerConfig(address="127.0.0.1", port=10000))
    cfg = Config(**config)
    cp = ControlPlane(cfg)
    await cp.start()
    return Plane(cp, registry)


@asynccontextmanager
async def running_plane(tmp_path: Path, services: list[dict[str, Any]] | None, published: bool = True,
                        **config: Any) -> AsyncIterator[Plane]:
    """``start_plane``, past its first publish (unless not ``published``); stopped on exit."""
    p = await start_plane(tmp_path, services, **config)
    try:
        if published:
            await p.wait_published(1)
        yield p
    finally:
        await p.cp.stop(0)


__all__ = ["Plane", "embedded_source", "running_plane", "service", "start_plane", "write_registry"]
