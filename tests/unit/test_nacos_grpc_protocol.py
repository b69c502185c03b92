"""The embedded registry's Nacos gRPC face, request by request, with a scripted client:
bad input gets a Nacos error on that call only, client detection ends silent
connections, and writes need the token when one is set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from xdscp.nacos_protocol import encode

from nacos_grpc_client import Client, connected, grpc_port, register, running_nacos_plane
from plane import Plane
from waiting import eventually

TOKEN = "t" * 32


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
    assert plane.ports() == [9001]
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
    assert plane.ports() == [9002]
    await client.call("InstanceRequest", register(9002, kind="deregisterInstance"))
    assert plane.ports() == []


async def test_closing_the_connection_removes_its_instances_at_once(plane: Plane, client: Client) -> None:
    await client.setup()
    await client.call("InstanceRequest", register(9001))
    await client.call("BatchInstanceRequest", {**register(0, "pool", "batchRegisterInstance"), "instances": [
        register(p)["instance"] for p in (9101, 9102)]})
    assert plane.ports() == [9001] and plane.ports("pool") == [9101, 9102]
    await client.close()
    await eventually(lambda: plane.ports() == [] and plane.ports("pool") == [], timeout=10,
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
    assert plane.ports() is None  # nothing registered: no service
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
    assert plane.ports() is None
    # the connection is still set up and serving
    assert (await client.call("InstanceRequest", register(9001)))[1]["errorCode"] == 0
    assert plane.ports() == [9001]
    sub = {"requestId": "s", "namespace": "public", "groupName": "DEFAULT_GROUP", "subscribe": True}
    assert (await client.call("SubscribeServiceRequest", {**sub, "serviceName": "a"}))[1]["errorCode"] == 0
    kind, body = await client.call("SubscribeServiceRequest", {**sub, "serviceName": "b"})
    assert (kind, body["errorCode"]) == ("SubscribeServiceResponse", 503)  # past max_subscriptions (1 here)


async def test_a_flooding_connection_gets_over_threshold_and_others_are_served(tmp_path: Path) -> None:
    # half a request a second, burst 1: only a client slower than 2 s a request would not be limited
    async with running_nacos_plane(tmp_path, max_requests_per_second=0.5) as plane, \
            connected(plane, set_up=True) as flood, connected(plane, set_up=True) as other:
        codes = [(await flood.call("HealthCheckRequest", {"requestId": str(i)}))[1]["errorCode"] for i in range(20)]
        assert codes[0] == 0 and 503 in codes
        assert (await other.call("InstanceRequest", register(9001)))[1]["errorCode"] == 0  # its own bucket
        assert plane.ports() == [9001]


async def test_client_detection_closes_a_connection_that_stops_answering(tmp_path: Path) -> None:
    # a short silence before detection; a generous time to answer it (a busy machine answers late)
    async with running_nacos_plane(tmp_path, keepalive_time=0.5, detection_interval=0.25,
                                   detection_timeout=5) as plane, \
            connected(plane, set_up=True) as alive, connected(plane, set_up=True) as silent:
        for c, port in ((alive, 9001), (silent, 9002)):
            assert (await c.call("InstanceRequest", register(port, f"svc{port}")))[1]["errorCode"] == 0
        silent.answer_detection = False  # a hung process: its TCP connection stays open
        await eventually(lambda: plane.ports("svc9002") == [], timeout=60, what="the silent one removed")
        await eventually(lambda: sum(k == "ClientDetectionRequest" for k, _ in alive.received) >= 2, timeout=30,
                         what=f"the live one asked, and answering, asked again later {[k for k, _ in alive.received]}")
        assert plane.ports("svc9001") == [9001]  # the one that answers stays


async def test_writes_need_the_token_when_one_is_set(tmp_path: Path) -> None:
    async with running_nacos_plane(tmp_path, admin={"write_token": TOKEN}) as plane, \
            connected(plane, set_up=True) as c:
        kind, body = await c.call("InstanceRequest", register(9001))
        assert (kind, body["errorCode"]) == ("InstanceResponse", 403)
        kind, body = await c.call("InstanceRequest", register(9001), {"accessToken": "wrong" * 8})
        assert body["errorCode"] == 403 and plane.ports() is None
        kind, body = await c.call("InstanceRequest", register(9001), {"accessToken": TOKEN})
        assert body["errorCode"] == 0 and plane.ports() == [9001]
        # reading needs no token
        kind, body = await c.call("ServiceQueryRequest", {"requestId": "4", "serviceName": "echo"})
        assert body["errorCode"] == 0
