"""The fixtures every folder shares. Helpers live in tests/support/ (on the import path):
``plane`` (an in-process control plane), ``waiting`` (eventually/until), ``upstreams``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from xdscp.local.etcd import EtcdServer
from xdscp.local.upstream import NamedUpstream

from plane import Plane, embedded_source, running_plane, service
from upstreams import running_upstreams


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "upstreams(*names): the names of the `upstreams` fixture's servers")


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """A real etcd on free loopback ports (tests that need it skip without the binary)."""
    server = EtcdServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    async with running_plane(tmp_path, [service("echo", 9001, 9002), service("api", 9101)]) as p:
        yield p


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Plane]:
    """A plane whose only source is the embedded registry (empty at start)."""
    async with running_plane(tmp_path, None, sources=[embedded_source(tmp_path)]) as p:
        yield p


@pytest.fixture
async def channel(plane: Plane) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(plane.target) as ch:
        yield ch


@pytest.fixture
def upstreams(request: pytest.FixtureRequest) -> Iterator[list[NamedUpstream]]:
    """Real HTTP upstreams named by the test's ``@pytest.mark.upstreams(...)``; stopped after it."""
    marker = request.node.get_closest_marker("upstreams")
    assert marker is not None and marker.args, "the upstreams fixture needs @pytest.mark.upstreams(name, ...)"
    with running_upstreams(*marker.args) as ups:
        yield ups
