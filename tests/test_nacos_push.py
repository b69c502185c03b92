"""``kind: nacos`` with ``transport: grpc``: subscriptions and pushes over Nacos' gRPC protocol.

No Nacos server can be installed here: the server is tests/nacos_grpc_server.py, whose
protocol is checked against the real nacos-sdk-python 3.x client in the last test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from xdscp.config import NacosSourceConfig
from xdscp.model.service import ServiceKey

from conftest import Plane, eventually, start_plane
from nacos_grpc_server import NacosGrpcServer
from nacos_sdk_venv import run_sdk_script


def ports(plane: Plane, name: str = "echo") -> list[int] | None:
    svc = plane.cp.registry.services.get(ServiceKey("public", "DEFAULT_GROUP", name))
    return None if svc is None else sorted(i.port for i in svc.instances)


@pytest.fixture
async def nacos() -> AsyncIterator[NacosGrpcServer]:
    server = await NacosGrpcServer().start()
    server.register("echo", "127.0.0.1", 9001)
    server.register("echo", "127.0.0.1", 9002, weight=3.0)
    try:
        yield server
    finally:
        await server.stop()


async def push_plane(tmp_path: Path, server: NacosGrpcServer, interval: float = 30.0, **settings: Any) -> Plane:
    plane = await start_plane(tmp_path, None, sources=[NacosSourceConfig(
        kind="nacos", name="nacos", servers=["http://127.0.0.1:8848"], transport="grpc", grpc_port=server.port,
        interval=interval, timeout=2.0, **settings)])
    return plane


async def test_instances_are_pushed_at_once_and_the_last_one_going_empties_the_service(
        tmp_path: Path, nacos: NacosGrpcServer) -> None:
    # A 30 s interval: anything seen sooner than that came by push, not by a poll.
    plane = await push_plane(tmp_path, nacos)
    try:
        await eventually(lambda: ports(plane) == [9001, 9002], what="subscribed")
        echo = plane.cp.registry.services[ServiceKey("public", "DEFAULT_GROUP", "echo")]
        assert [i.weight for i in echo.instances] == [1.0, 3.0]
        nacos.register("echo", "127.0.0.1", 9003)
        await eventually(lambda: ports(plane) == [9001, 9002, 9003], what="pushed add")
        for port in (9001, 9002, 9003):
            nacos.deregister("echo", "127.0.0.1", port)
        await eventually(lambda: ports(plane) == [], what="pushed: zero instances")
        assert "NotifySubscriberResponse" in nacos.requests  # every push is answered
        assert nacos.requests.count("ServiceListRequest") == 1  # no polling happened
    finally:
        await plane.cp.stop(0)


async def test_a_push_that_overtakes_the_subscription_answer_wins(tmp_path: Path, nacos: NacosGrpcServer) -> None:
    nacos.subscribe_answer_delay = 0.3
    plane = await push_plane(tmp_path, nacos)
    try:
        await eventually(lambda: "SubscribeServiceRequest" in nacos.requests, what="subscribing")
        nacos.register("echo", "127.0.0.1", 9003)  # pushed before the (older) answer arrives
        await eventually(lambda: ports(plane) is not None, what="applied")
        await asyncio.sleep(0.1)
        assert ports(plane) == [9001, 9002, 9003]
    finally:
        await plane.cp.stop(0)


async def test_new_services_are_subscribed_on_the_next_list(tmp_path: Path, nacos: NacosGrpcServer) -> None:
    plane = await push_plane(tmp_path, nacos, interval=0.1)
    try:
        await eventually(lambda: ports(plane) == [9001, 9002], what="subscribed")
        nacos.register("fresh", "127.0.0.1", 9301)
        await eventually(lambda: ports(plane, "fresh") == [9301], what="new service")
        nacos.register("fresh", "127.0.0.1", 9302)
        await eventually(lambda: ports(plane, "fresh") == [9301, 9302], what="pushed to the new subscription")
    finally:
        await plane.cp.stop(0)


async def test_a_dropped_connection_keeps_the_view_and_resubscribes(tmp_path: Path, nacos: NacosGrpcServer) -> None:
    plane = await push_plane(tmp_path, nacos)
    try:
        await eventually(lambda: ports(plane) == [9001, 9002], what="subscribed")
        source = plane.cp.sources[0]
        await nacos.stop()  # the server goes away: the view stays
        await eventually(lambda: source.last_error is not None, timeout=10, what="loss noticed")
        assert ports(plane) == [9001, 9002]
        nacos.deregister("echo", "127.0.0.1", 9001)  # changed while we were away
        await nacos.start()
        await eventually(lambda: ports(plane) == [9002], timeout=15, what="resynced")
        assert source.last_error is None
        nacos.register("echo", "127.0.0.1", 9004)
        await eventually(lambda: ports(plane) == [9002, 9004], what="pushes again")
    finally:
        await plane.cp.stop(0)


async def test_a_refused_token_is_an_error_not_an_empty_registry(tmp_path: Path) -> None:
    server = await NacosGrpcServer(token="right").start()
    server.register("echo", "127.0.0.1", 9001)
    wrong = await push_plane(tmp_path / "a", server, access_token="wrong")
    right = await push_plane(tmp_path / "b", server, access_token="right")
    try:
        await eventually(lambda: ports(right) == [9001], what="token accepted")
        source = wrong.cp.sources[0]
        await eventually(lambda: source.last_error is not None, what="token refused")
        assert "user not found" in (source.last_error or "") and wrong.cp.publisher.published == 0
    finally:
        await wrong.cp.stop(0)
        await right.cp.stop(0)
        await server.stop()


async def test_the_test_server_speaks_nacos_as_the_real_sdk_does(tmp_path: Path, nacos: NacosGrpcServer) -> None:
    plane = await push_plane(tmp_path, nacos)
    try:
        await eventually(lambda: ports(plane) == [9001, 9002], what="subscribed")
        # The real client (nacos-sdk-python 3.x) subscribes, registers an ephemeral instance,
        # is pushed the change like xdscp is, and exits: its connection closes, so the
        # instance goes, and xdscp is told at once.
        proc = await run_sdk_script(nacos.port, "echo", 9005, tmp_path / "sdk-cache")
        assert proc.stdout is not None and proc.stdin is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"registered\n"
        await eventually(lambda: ports(plane) == [9001, 9002, 9005], timeout=10, what="SDK instance pushed")
        pushed = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert pushed == b"pushed [9001, 9002, 9005]\n", pushed  # the SDK took our NotifySubscriberRequest
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await eventually(lambda: ports(plane) == [9001, 9002], timeout=10, what="gone with its connection")
    finally:
        await plane.cp.stop(0)
