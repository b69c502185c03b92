"""The embedded registry's Nacos gRPC face, request by request, with a scripted client:
bad input gets a Nacos error on that call only, client detection ends silent
connections, and writes need the token when one is set."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from xdscp.model.service import ServiceKey
from xdscp.nacos_protocol import BI_STREAM_METHOD, REQUEST_METHOD, decode, encode
from xdscp.sources.embedded.source import EmbeddedSource

from conftest import Plane, embedded_source, eventually, start_plane

TOKEN = "t" * 32


class Client:
    """One transport: unary calls and, after ``setup``, the bidirectional stream."""

    def __init__(self, port: int) -> None:
        # a transport of its own, as SDKs make sure of: Nacos names a connection by its transport
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        self.unary = self.channel.unary_unary(REQUEST_METHOD)
        self.stream: Any = None
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.answer_detection = True
        self._reader: asyncio.Task[None] | None = None

    async def call(self, kind: str, body: dict[str, Any], headers: dict[str, str] | None = None,
                   raw: bytes | None = None) -> tuple[str, dict[str, Any]]:
        reply = await self.unary(raw if raw is not None else encode(kind, body, headers), timeout=10)
        kind, body, _ = decode(reply)
        return kind, body

    async def setup(self) -> None:
        self.stream = self.channel.stream_stream(BI_STREAM_METHOD)()
        await self.stream.write(encode("ConnectionSetupRequest", {"clientVersion": "test", "tenant": "",
                                                                  "labels": {}, "abilityTable": {}}))
        self._reader = asyncio.create_task(self._read())
        await eventually(lambda: any(k == "SetupAckRequest" for k, _ in self.received), timeout=10,
                         what="SetupAckRequest")

    async def _read(self) -> None:
        async for raw in self.stream:
            kind, body, _ = decode(raw)
            self.received.append((kind, body))
            answer = {"ClientDetectionRequest": "ClientDetectionResponse",
                      "NotifySubscriberRequest": "NotifySubscriberResponse"}.get(kind)
            if answer and (self.answer_detection or kind != "ClientDetectionRequest"):
                await self.stream.write(encode(answer, {"resultCode": 200, "requestId": body.get("requestId")}))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.channel.close()


def register(port: int, service: str = "echo", kind: str = "registerInstance") -> dict[str, Any]:
    return {"requestId": "1", "namespace": "public", "serviceName": service, "groupName": "DEFAULT_GROUP",
            "type": kind, "instance": {"ip": "127.0.0.1", "port": port, "weight": 1.0, "healthy": True,
                                       "enabled": True, "ephemeral": True, "clusterName": "", "metadata": {}}}


def ports(plane: Plane, name: str = "echo") -> list[int]:
    svc = plane.cp.registry.services.get(ServiceKey("public", "DEFAULT_GROUP", name))
    return [] if svc is None else sorted(i.port for i in svc.instances)


def grpc_port(plane: Plane) -> int:
    src = plane.cp.sources[0]
    assert isinstance(src, EmbeddedSource) and src.nacos_grpc is not None
    return src.nacos_grpc.port


async def nacos_plane(tmp_path: Path, admin: dict[str, Any] | None = None, **grpc_settings: Any) -> Plane:
    return await start_plane(tmp_path, None, admin=admin or {}, sources=[embedded_source(
        tmp_path, nacos_grpc={"address": "127.0.0.1:0", "max_message_bytes": 64 * 1024, **grpc_settings})])


@asynccontextmanager
async def running_nacos_plane(tmp_path: Path, **grpc_settings: Any) -> AsyncIterator[Plane]:
    """``nacos_plane``, stopped on exit."""
    p = await nacos_plane(tmp_path, **grpc_settings)
    try:
        yield p
    finally:
        await p.cp.stop(0)


@asynccontextmanager
async def connected(plane: Plane, set_up: bool) -> AsyncIterator[Client]:
    """A client of the plane's gRPC face (its stream set up with ``set_up``), closed on exit."""
    c = Client(grpc_port(plane))
    try:
        if set_up:
            await c.setup()
        yield c
    finally:
        await c.close()


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    async with running_nacos_plane(tmp_path, max_subscriptions=1) as p:
        yield p


@pytest.fixture
async def client(plane: Plane) -> AsyncIterator[Client]:
    async with connected(plane, set_up=False) as c:  # the tests set it up (or show what comes before)
        yield c


async def test_server_check_then_setup_then_register_and_a_subscriber_is_pushed(plane: Plane, client: Client) -> None:
    kind, body = await client.call("ServerCheckRequest", {"requestId": "0"})
    assert kind == "ServerCheckResponse" and body["supportAbilityNegotiation"] is True and body["connectionId"]
    await client.setup()
    ack = next(b for k, b in client.received if k == "SetupAckRequest")
    assert ack["abilityTable"]["supportPersistentInstanceByGrpc"] is True
    kind, body = await client.call("SubscribeServiceRequest", {"requestId": "2", "namespace": "public",
                                                               "serviceName": "echo", "groupName": "DEFAULT_GROUP",
                                                               "subscribe": True, "clusters": ""})
    assert kind == "SubscribeServiceResponse" and body["serviceInfo"]["hosts"] == []
    kind, body = await client.call("InstanceRequest", register(9001))
    assert (kind, body["resultCode"], body["errorCode"]) == ("InstanceResponse", 200, 0)
    assert ports(plane) == [9001]
    await eventually(lambda: any(k == "NotifySubscriberRequest" and [h["port"] for h in b["serviceInfo"]["hosts"]]
                                 == [9001] for k, b in client.received), timeout=10, what="the push")
    kind, body = await client.call("ServiceListRequest", {"requestId": "3", "namespace": "public",
                                                          "groupName": "DEFAULT_GROUP", "pageNo": 1, "pageSize": 10})
    assert (kind, body["count"], body["serviceNames"]) == ("ServiceListResponse", 1, ["echo"])
    kind, body = await client.call("ServiceQueryRequest", {"requestId": "4", "namespace": "public",
                                                           "serviceName": "echo", "groupName": "DEFAULT_GROUP",
                                                           "cluster": "", "healthyOnly": False})
    assert kind == "QueryServiceResponse" and [h["port"] for h in body["serviceInfo"]["hosts"]] == [9001]
    # registering again on the same connection replaces its registration (Nacos 2)
    await client.call("InstanceRequest", register(9002))
    assert ports(plane) == [9002]
    await client.call("InstanceRequest", register(9002, kind="deregisterInstance"))
    assert ports(plane) == []


async def test_closing_the_connection_removes_its_instances_at_once(plane: Plane, client: Client) -> None:
    await client.setup()
    await client.call("InstanceRequest", register(9001))
    await client.call("BatchInstanceRequest", {**register(0, "pool", "batchRegisterInstance"), "instances": [
        register(p)["instance"] for p in (9101, 9102)]})
    assert ports(plane) == [9001] and ports(plane, "pool") == [9101, 9102]
    await client.close()
    await eventually(lambda: ports(plane) == [] and ports(plane, "pool") == [], timeout=10,
                     what="the connection's instances removed")


@pytest.mark.parametrize(("raw", "code"), [
    (b"\xff\x00 not a payload", 502),  # malformed
    (encode("NoSuchRequest", {"requestId": "9"}), 302),  # unknown type
    (encode("InstanceRequest", register(9001)), 301),  # before the connection is set up
])
async def test_bad_requests_get_a_nacos_error_and_the_server_keeps_serving(plane: Plane, client: Client,
                                                                           raw: bytes, code: int) -> None:
    kind, body = await client.call("", {}, raw=raw)
    assert kind == "ErrorResponse" and body["errorCode"] == code and body["resultCode"] == 500
    assert ports(plane) == []
    other = Client(grpc_port(plane))
    try:
        await other.setup()
        assert (await other.call("InstanceRequest", register(9005)))[1]["errorCode"] == 0
    finally:
        await other.close()


async def test_bad_fields_an_oversized_message_and_too_many_subscriptions_are_refused_on_that_call(
        plane: Plane, client: Client) -> None:
    await client.setup()
    bad = register(9001)
    bad["instance"]["port"] = "not-a-port"
    kind, body = await client.call("InstanceRequest", bad)
    assert (kind, body["errorCode"]) == ("InstanceResponse", 400) and "port" in body["message"]
    kind, body = await client.call("InstanceRequest", {**register(9001), "serviceName": "a@@b@@c"})
    assert body["errorCode"] == 400
    huge = register(9001)
    huge["instance"]["metadata"] = {"blob": "x" * (128 * 1024)}  # past max_message_bytes (64 KiB here)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.call("InstanceRequest", huge)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ports(plane) == []
    # the connection is still set up and serving
    assert (await client.call("InstanceRequest", register(9001)))[1]["errorCode"] == 0
    assert ports(plane) == [9001]
    sub = {"requestId": "s", "namespace": "public", "groupName": "DEFAULT_GROUP", "subscribe": True}
    assert (await client.call("SubscribeServiceRequest", {**sub, "serviceName": "a"}))[1]["errorCode"] == 0
    kind, body = await client.call("SubscribeServiceRequest", {**sub, "serviceName": "b"})
    assert (kind, body["errorCode"]) == ("SubscribeServiceResponse", 503)  # past max_subscriptions (1 here)


async def test_a_flooding_connection_gets_over_threshold_and_others_are_served(tmp_path: Path) -> None:
    # half a request a second, burst 1: only a client slower than 2 s a request would not be limited
    plane = await nacos_plane(tmp_path, max_requests_per_second=0.5)
    flood, other = Client(grpc_port(plane)), Client(grpc_port(plane))
    try:
        await flood.setup()
        await other.setup()
        codes = [(await flood.call("HealthCheckRequest", {"requestId": str(i)}))[1]["errorCode"] for i in range(20)]
        assert codes[0] == 0 and 503 in codes
        assert (await other.call("InstanceRequest", register(9001)))[1]["errorCode"] == 0  # its own bucket
        assert ports(plane) == [9001]
    finally:
        await flood.close()
        await other.close()
        await plane.cp.stop(0)


async def test_client_detection_closes_a_connection_that_stops_answering(tmp_path: Path) -> None:
    # a short silence before detection; a generous time to answer it (a busy machine answers late)
    plane = await nacos_plane(tmp_path, keepalive_time=0.5, detection_interval=0.25, detection_timeout=5)
    alive, silent = Client(grpc_port(plane)), Client(grpc_port(plane))
    try:
        for c, port in ((alive, 9001), (silent, 9002)):
            await c.setup()
            assert (await c.call("InstanceRequest", register(port, f"svc{port}")))[1]["errorCode"] == 0
        silent.answer_detection = False  # a hung process: its TCP connection stays open
        await eventually(lambda: ports(plane, "svc9002") == [], timeout=60, what="the silent one removed")
        await eventually(lambda: sum(k == "ClientDetectionRequest" for k, _ in alive.received) >= 2, timeout=30,
                         what=f"the live one asked, and answering, asked again later {[k for k, _ in alive.received]}")
        assert ports(plane, "svc9001") == [9001]  # the one that answers stays
    finally:
        await alive.close()
        await silent.close()
        await plane.cp.stop(0)


async def test_writes_need_the_token_when_one_is_set(tmp_path: Path) -> None:
    plane = await nacos_plane(tmp_path, admin={"write_token": TOKEN})
    c = Client(grpc_port(plane))
    try:
        await c.setup()
        kind, body = await c.call("InstanceRequest", register(9001))
        assert (kind, body["errorCode"]) == ("InstanceResponse", 403)
        kind, body = await c.call("InstanceRequest", register(9001), {"accessToken": "wrong" * 8})
        assert body["errorCode"] == 403 and ports(plane) == []
        kind, body = await c.call("InstanceRequest", register(9001), {"accessToken": TOKEN})
        assert body["errorCode"] == 0 and ports(plane) == [9001]
        # reading needs no token
        kind, body = await c.call("ServiceQueryRequest", {"requestId": "4", "serviceName": "echo"})
        assert body["errorCode"] == 0
    finally:
        await c.close()
        await plane.cp.stop(0)
