"""Fixtures: an in-process control plane on free loopback ports, fed by a registry file."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web

from xdscp.app import ControlPlane
from xdscp.config import Config, EmbeddedSourceConfig, FileSourceConfig, ListenerConfig
from xdscp.local.etcd import EtcdServer
from xdscp.local.upstream import NamedUpstream
from xdscp.sources.registry_file import write_registry_file as write_registry


def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Call ``check()`` until it returns something truthy (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, AssertionError, KeyError) as e:
            last = e
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")


async def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Call ``check()`` (awaiting it if it is a coroutine) until it returns something truthy;
    fail after ``timeout`` seconds. The event loop runs between calls."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")


def service(name: str, *ports: int, **fields: Any) -> dict[str, Any]:
    """A registry entry with one 127.0.0.1 instance per port."""
    return {"name": name, "instances": [{"host": "127.0.0.1", "port": p} for p in ports], **fields}


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

    async def wait_published(self, count: int, timeout: float = 5.0) -> None:
        """Wait until the publisher has published at least ``count`` snapshots."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.cp.publisher.published < count:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"published {self.cp.publisher.published} < {count}")
            await asyncio.sleep(0.01)

    async def admin_json(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.cp.admin_port}{path}"

        def get() -> Any:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        return await asyncio.to_thread(get)


async def start_plane(tmp_path: Path, services: list[dict[str, Any]] | None, **config: Any) -> Plane:
    """A plane fed by a registry file (``services``), unless ``sources=`` says otherwise."""
    registry = tmp_path / "registry.yaml"
    if services is not None:
        write_registry(registry, services)
    config.setdefault("sources", [FileSourceConfig(kind="file", name="file", path=registry, poll_interval=0.02)])
    config["xds"] = {**config.get("xds", {}), "address": "127.0.0.1:0"}
    config["admin"] = {"address": "127.0.0.1:0", **config.get("admin", {})}
    cfg = Config(
        listener=ListenerConfig(address="127.0.0.1", port=10000),
        **config,
    )
    cp = ControlPlane(cfg)
    await cp.start()
    return Plane(cp, registry)


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """A real etcd on free loopback ports (tests that need it skip without the binary)."""
    server = EtcdServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def running_plane(tmp_path: Path, services: list[dict[str, Any]] | None, **config: Any) -> AsyncIterator[Plane]:
    """``start_plane``, past its first publish; stopped on exit."""
    p = await start_plane(tmp_path, services, **config)
    try:
        await p.wait_published(1)
        yield p
    finally:
        await p.cp.stop(0)


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    async with running_plane(tmp_path, [service("echo", 9001, 9002), service("api", 9101)]) as p:
        yield p


def embedded_source(tmp_path: Path, **settings: Any) -> EmbeddedSourceConfig:
    return EmbeddedSourceConfig(kind="embedded", name="embedded", database=tmp_path / "registry.db", **settings)


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Plane]:
    """A plane whose only source is the embedded registry (empty at start)."""
    async with running_plane(tmp_path, None, sources=[embedded_source(tmp_path)]) as p:
        yield p


@pytest.fixture
async def channel(plane: Plane) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(plane.target) as ch:
        yield ch


@contextmanager
def running_upstreams(*names: str) -> Iterator[list[NamedUpstream]]:
    """Real HTTP upstreams on loopback, each answering its name; stopped on exit."""
    ups = [NamedUpstream(n).start() for n in names]
    try:
        yield ups
    finally:
        for u in ups:
            u.stop()


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app (a test double of a registry's HTTP API) on a free loopback port."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def xdscp_cli(*args: str) -> tuple[int, str]:
    """Run ``python -m xdscp ARGS`` (an operator's command); its exit code and output."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "xdscp", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return await proc.wait(), out.decode()
