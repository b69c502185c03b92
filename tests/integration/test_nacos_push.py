"""``kind: nacos`` with ``transport: grpc``: subscriptions and pushes over Nacos' gRPC protocol.

The Nacos server here is xdscp's own embedded registry (its Nacos gRPC face), whose
fidelity to Nacos is checked with the real SDKs in test_nacos_grpc_sdks.py; the last
test puts a real SDK on one side and xdscp's Nacos source on the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from xdscp.config import NacosSourceConfig
from xdscp.credentials import hash_password
from xdscp.local.ports import free_port_pair
from xdscp.metrics import NACOS_GRPC_REQUESTS
from xdscp.model.service import Instance, ServiceKey
from xdscp.nacos_protocol import GRPC_PORT_OFFSET
from xdscp.sources.embedded.api.nacos_grpc.server import NacosGrpcServer
from xdscp.sources.embedded.source import EmbeddedSource

from nacos_sdk_venv import PYTHON_3, start_sdk
from plane import Plane, embedded_source, running_plane
from waiting import eventually


class NacosServer:
    """A plane on the embedded registry, as the Nacos server xdscp's Nacos source reads."""

    def __init__(self, plane: Plane) -> None:
        self.plane = plane
        src = plane.cp.sources[0]
        assert isinstance(src, EmbeddedSource)
        self.source = src

    @property
    def grpc(self) -> NacosGrpcServer:
        assert self.source.nacos_grpc is not None
        return self.source.nacos_grpc

    async def register(self, service: str, port: int, **fields: Any) -> None:
        """A persistent instance, as an admin registers it (no connection holds it)."""
        await self.source.store.register(ServiceKey("public", "DEFAULT_GROUP", service),
                                         Instance(host="127.0.0.1", port=port, ephemeral=False, **fields))

    async def deregister(self, service: str, port: int) -> None:
        await self.source.store.deregister(ServiceKey("public", "DEFAULT_GROUP", service), "127.0.0.1", port)


def served(kind: str) -> float:
    return NACOS_GRPC_REQUESTS.labels(kind, "0")._value.get()


@pytest.fixture
async def nacos(tmp_path: Path) -> AsyncIterator[NacosServer]:
    # at the HTTP port + 1000, where the SDK of the last test looks for it
    async with running_plane(tmp_path / "nacos", None, published=False, sources=[embedded_source(tmp_path)],
                             admin={"address": f"127.0.0.1:{free_port_pair(GRPC_PORT_OFFSET)}"}) as plane:
        server = NacosServer(plane)
        await server.register("echo", 9001)
        await server.register("echo", 9002, weight=3.0)
        yield server


@asynccontextmanager
async def push_plane(tmp_path: Path, server: NacosServer, interval: float = 30.0,
                     **settings: Any) -> AsyncIterator[Plane]:
    async with running_plane(tmp_path / "xdscp", None, published=False, sources=[NacosSourceConfig(
            kind="nacos", name="nacos", servers=[f"http://127.0.0.1:{server.plane.cp.admin_port}"], transport="grpc",
            grpc_port=server.grpc.port, interval=interval, timeout=2.0, **settings)]) as plane:
        yield plane


async def test_instances_are_pushed_at_once_and_the_last_one_going_empties_the_service(
        tmp_path: Path, nacos: NacosServer) -> None:
    # A 30 s interval: anything seen sooner than that came by push, not by a poll.
    lists, acks = served("ServiceListRequest"), sum(c.acks for c in nacos.grpc.connections.values())
    async with push_plane(tmp_path, nacos) as plane:
        await eventually(lambda: plane.ports() == [9001, 9002], what="subscribed")
        echo = plane.cp.registry.services[ServiceKey("public", "DEFAULT_GROUP", "echo")]
        assert [i.weight for i in echo.instances] == [1.0, 3.0]
        await nacos.register("echo", 9003)
        await eventually(lambda: plane.ports() == [9001, 9002, 9003], what="pushed add")
        for port in (9001, 9002, 9003):
            await nacos.deregister("echo", port)
        await eventually(lambda: plane.ports() == [], what="pushed: zero instances")
        await eventually(lambda: sum(c.acks for c in nacos.grpc.connections.values()) > acks,
                         what="pushes answered")  # the source answers every NotifySubscriberRequest
        assert served("ServiceListRequest") - lists == 1  # no polling happened


async def test_new_services_are_subscribed_on_the_next_list(tmp_path: Path, nacos: NacosServer) -> None:
    async with push_plane(tmp_path, nacos, interval=0.1) as plane:
        await eventually(lambda: plane.ports() == [9001, 9002], what="subscribed")
        await nacos.register("fresh", 9301)
        await eventually(lambda: plane.ports("fresh") == [9301], what="new service")
        await nacos.register("fresh", 9302)
        await eventually(lambda: plane.ports("fresh") == [9301, 9302], what="pushed to the new subscription")


async def test_a_dropped_connection_keeps_the_view_and_resubscribes(tmp_path: Path, nacos: NacosServer) -> None:
    async with push_plane(tmp_path, nacos) as plane:
        await eventually(lambda: plane.ports() == [9001, 9002], what="subscribed")
        source = plane.cp.sources[0]
        port = nacos.grpc.port
        await nacos.grpc.stop()  # the gRPC face goes away: the view stays
        await eventually(lambda: source.last_error is not None, timeout=10, what="loss noticed")
        assert plane.ports() == [9001, 9002]
        await nacos.deregister("echo", 9001)  # changed while we were away
        await nacos.grpc.start(f"127.0.0.1:{port}")
        await eventually(lambda: plane.ports() == [9002], timeout=15, what="resynced")
        assert source.last_error is None
        await nacos.register("echo", 9004)
        await eventually(lambda: plane.ports() == [9002, 9004], what="pushes again")


async def test_a_real_sdk_registers_and_xdscps_nacos_source_is_pushed_it(tmp_path: Path, nacos: NacosServer) -> None:
    # nacos-sdk-python 3.2 -> the embedded registry's gRPC face -> xdscp's Nacos source: both
    # ends of xdscp's Nacos gRPC speak to a real SDK's idea of the protocol.
    async with push_plane(tmp_path, nacos) as plane:
        sdk = await start_sdk(PYTHON_3, nacos.plane.cp.admin_port, tmp_path / "sdk")
        try:
            await eventually(lambda: plane.ports() == [9001, 9002], what="subscribed")
            assert await sdk.do("register echo 9005") == "ok register"
            await eventually(lambda: plane.ports() == [9001, 9002, 9005], timeout=10, what="SDK instance pushed")
            sdk.kill()
            await eventually(lambda: plane.ports() == [9001, 9002], timeout=10, what="gone with its connection")
        finally:
            await sdk.close()


async def test_a_refused_login_is_an_error_not_an_empty_registry(tmp_path: Path) -> None:
    users = [{"username": "reader", "password_hash": hash_password("right", 1000)}]
    async with running_plane(tmp_path / "nacos", None, published=False, sources=[embedded_source(tmp_path)],
                             admin={"address": f"127.0.0.1:{free_port_pair(GRPC_PORT_OFFSET)}",
                                    "users": users}) as plane:
        server = NacosServer(plane)
        await server.register("echo", 9001)
        async with push_plane(tmp_path / "a", server, username="reader", password="wrong") as wrong, \
                push_plane(tmp_path / "b", server, username="reader", password="right") as right:
            await eventually(lambda: right.ports() == [9001], what="logged in, subscribed")
            source = wrong.cp.sources[0]
            await eventually(lambda: source.last_error is not None, what="login refused")
            assert "HTTP 403" in (source.last_error or "") and wrong.cp.publisher.published == 0
            await server.register("echo", 9002)
            await eventually(lambda: right.ports() == [9001, 9002], what="pushed with the token")
