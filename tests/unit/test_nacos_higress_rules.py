"""What Higress' McpBridge (nacos-sdk-go 2.3.5) needs from the Nacos gRPC face, and bad
input that must get a Nacos error: a scripted client (test_nacos_grpc_protocol's) that
follows the SDK's rules from its source. A push whose lastRefTime is not newer than the
one held is dropped; a typed response with an error code reads as success; the SDK
subscribes to every service at once."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from xdscp.nacos_protocol import BI_STREAM_METHOD, Payload, decode, encode

from nacos_go_sdk_cache import GoSdkCache
from nacos_grpc_client import Client, connected, grpc_port, register, running_nacos_plane
from plane import Plane
from waiting import eventually

SUB = {"namespace": "public", "groupName": "DEFAULT_GROUP", "subscribe": True, "clusters": ""}


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    async with running_nacos_plane(tmp_path) as p:  # the default limits
        yield p


@pytest.fixture
async def client(plane: Plane) -> AsyncIterator[Client]:
    async with connected(plane, set_up=True) as c:
        yield c


def pushes(client: Client, name: str = "echo") -> list[dict[str, Any]]:
    return [b["serviceInfo"] for k, b in client.received if k == "NotifySubscriberRequest"
            and b["serviceName"] == name]


async def test_a_disabled_instance_is_left_out_of_pushes_queries_and_v1_lists(plane: Plane, client: Client) -> None:
    await client.call("SubscribeServiceRequest", {**SUB, "requestId": "s", "serviceName": "echo"})
    for port in (9001, 9002):
        await client.call("PersistentInstanceRequest", {**register(port), "type": "registerInstance"})
    await eventually(lambda: pushes(client) and len(pushes(client)[-1]["hosts"]) == 2, what="both pushed")
    req = urllib.request.Request(f"http://127.0.0.1:{plane.cp.admin_port}/v1/services/echo/instances/"
                                 "127.0.0.1:9001", data=json.dumps({"enabled": False}).encode(), method="PATCH",
                                 headers={"Content-Type": "application/json"})
    await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=5).close())
    await eventually(lambda: [h["port"] for h in pushes(client)[-1]["hosts"]] == [9002], what="9001 left out")
    _, body = await client.call("ServiceQueryRequest", {**SUB, "requestId": "q", "serviceName": "echo"})
    assert [h["port"] for h in body["serviceInfo"]["hosts"]] == [9002]

    def v1_list() -> Any:
        url = f"http://127.0.0.1:{plane.cp.admin_port}/nacos/v1/ns/instance/list?serviceName=echo"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())

    assert [h["port"] for h in (await asyncio.to_thread(v1_list))["hosts"]] == [9002]


async def test_last_ref_time_strictly_increases_so_the_go_sdk_keeps_every_change(plane: Plane, client: Client) -> None:
    cache = GoSdkCache()
    _, body = await client.call("SubscribeServiceRequest", {**SUB, "requestId": "s", "serviceName": "echo"})
    cache.offer(body["serviceInfo"])
    other = Client(grpc_port(plane))
    await other.setup()
    try:
        # Many changes as fast as they come: several land in one millisecond.
        for port in range(9001, 9031):
            await other.call("InstanceRequest", register(port))
        await eventually(lambda: pushes(client) and pushes(client)[-1]["hosts"][0]["port"] == 9030,
                         what="the last change pushed")
    finally:
        await other.close()
    await eventually(lambda: pushes(client)[-1]["hosts"] == [], what="the closed connection's instance gone")
    seen = pushes(client)
    times = [body["serviceInfo"]["lastRefTime"], *(p["lastRefTime"] for p in seen)]
    assert times == sorted(set(times)), "lastRefTime went back or repeated"
    for info in seen:
        cache.offer(info)
    assert cache.lost == 0 and cache.held["echo"]["hosts"] == []  # the other connection closed: gone


async def test_every_subscriber_of_a_change_gets_the_same_encoded_push(plane: Plane, client: Client) -> None:
    second = Client(grpc_port(plane))
    await second.setup()
    try:
        for c in (client, second):
            await c.call("SubscribeServiceRequest", {**SUB, "requestId": "s", "serviceName": "echo"})
        await client.call("PersistentInstanceRequest", register(9001))
        await eventually(lambda: pushes(client) and pushes(second), what="both pushed")
        a = [b for k, b in client.received if k == "NotifySubscriberRequest"][-1]
        b = [b for k, b in second.received if k == "NotifySubscriberRequest"][-1]
        assert a == b  # requestId, lastRefTime and all: one encoding shared
    finally:
        await second.close()


async def test_a_burst_of_ten_thousand_subscriptions_all_succeed_with_the_default_limits(
        plane: Plane, client: Client) -> None:
    """A first sync (or the SDK's redo after a reconnect) subscribes to every service at
    once; nacos-sdk-go would take a refusal for success, and the service would never be watched."""
    codes: list[int] = []
    for start in range(0, 10_000, 500):
        answers = await asyncio.gather(*(client.call("SubscribeServiceRequest", {
            **SUB, "requestId": str(i), "serviceName": f"svc-{i}"}) for i in range(start, start + 500)))
        codes += [body["errorCode"] for _, body in answers]
    assert len(codes) == 10_000 and set(codes) == {0}
    src = plane.cp.sources[0]
    assert sum(len(subs) for subs in src.nacos_grpc.naming.subscribers.values()) == 10_000  # type: ignore[union-attr]
    _, body = await client.call("SubscribeServiceRequest", {**SUB, "requestId": "x", "serviceName": "one-more"})
    assert body["errorCode"] == 503 and "10000 services at most" in body["message"]


@pytest.mark.parametrize("field, value, code", [
    ("subscribe", "false", 0),  # a string false unsubscribes, as Nacos reads it
    ("subscribe", "maybe", 400),
    ("subscribe", 7, 400),
    ("groupName", 12, 400),  # never silently the default group
    ("namespace", ["public"], 400),
])
async def test_parameters_are_read_as_nacos_reads_them(plane: Plane, client: Client, field: str, value: Any,
                                                       code: int) -> None:
    await client.call("SubscribeServiceRequest", {**SUB, "requestId": "s", "serviceName": "echo"})
    kind, body = await client.call("SubscribeServiceRequest", {**SUB, "requestId": "t", "serviceName": "echo",
                                                               field: value})
    assert (kind, body["errorCode"]) == ("SubscribeServiceResponse", code), body
    naming = plane.cp.sources[0].nacos_grpc.naming  # type: ignore[union-attr]
    subscribed = any(key.name == "echo" for key in naming.subscribers)
    assert subscribed is (field != "subscribe" or code != 0)
    if code:
        assert field in body["message"]


async def test_healthy_only_as_a_string(plane: Plane, client: Client) -> None:
    await client.call("PersistentInstanceRequest", register(9001))
    bad = {**register(9002), "instance": {**register(9002)["instance"], "healthy": False}}
    await client.call("PersistentInstanceRequest", bad)
    for raw, ports in (("false", [9001, 9002]), ("true", [9001]), (True, [9001])):
        _, body = await client.call("ServiceQueryRequest", {**SUB, "requestId": "q", "serviceName": "echo",
                                                            "healthyOnly": raw})
        assert sorted(h["port"] for h in body["serviceInfo"]["hosts"]) == ports, raw


async def test_a_body_nested_past_the_parser_gets_a_nacos_error(plane: Plane, client: Client) -> None:
    deep = Payload()
    deep.metadata.type = "ServiceQueryRequest"
    deep.body.value = b"[" * 20_000 + b"]" * 20_000  # far past the JSON parser's depth, under the size limit
    kind, body = await client.call("", {}, raw=deep.SerializeToString())
    assert kind == "ErrorResponse" and body["errorCode"] == 502 and "nested" in body["message"]
    assert (await client.call("HealthCheckRequest", {"requestId": "h"}))[1]["errorCode"] == 0


async def test_past_the_connection_limit_the_client_is_told_to_connect_elsewhere(tmp_path: Path) -> None:
    async with running_nacos_plane(tmp_path, max_connections=1) as plane, connected(plane, set_up=True) as first:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port(plane)}") as ch:
            stream = ch.stream_stream(BI_STREAM_METHOD)()
            await stream.write(encode("ConnectionSetupRequest", {"clientVersion": "t", "tenant": "", "labels": {},
                                                                 "abilityTable": {}}))
            got = [decode(raw)[0] async for raw in stream]
            assert got == ["ConnectResetRequest"]
        assert (await first.call("HealthCheckRequest", {"requestId": "h"}))[1]["errorCode"] == 0


async def test_every_face_maps_the_default_cluster_alike(plane: Plane, client: Client) -> None:
    """An instance registered over HTTP and one over gRPC, neither naming a cluster: the
    same cluster in the model (""), DEFAULT on the wire, and a DEFAULT filter finds both."""
    url = (f"http://127.0.0.1:{plane.cp.admin_port}/nacos/v1/ns/instance?serviceName=echo&ip=127.0.0.1&port=9001"
           "&ephemeral=false")
    await asyncio.to_thread(lambda: urllib.request.urlopen(urllib.request.Request(url, method="POST"),
                                                           timeout=5).close())
    grpc_host = {**register(9002), "instance": {"ip": "127.0.0.1", "port": 9002}}  # no clusterName at all
    assert (await client.call("PersistentInstanceRequest", grpc_host))[1]["errorCode"] == 0
    svc = next(s for k, s in plane.cp.registry.services.items() if k.name == "echo")
    assert sorted((i.port, i.cluster) for i in svc.instances) == [(9001, ""), (9002, "")]
    _, body = await client.call("ServiceQueryRequest", {**SUB, "requestId": "q", "serviceName": "echo",
                                                        "cluster": "DEFAULT"})
    hosts = body["serviceInfo"]["hosts"]
    assert sorted((h["port"], h["clusterName"]) for h in hosts) == [(9001, "DEFAULT"), (9002, "DEFAULT")]
    assert {h["instanceId"].split("#")[2] for h in hosts} == {"DEFAULT"}
    _, page = await client.call("ServiceListRequest", {"requestId": "l", "namespace": "public",
                                                       "groupName": "DEFAULT_GROUP", "pageSize": 10_001})
    assert page["errorCode"] == 400 and "pageSize" in page["message"]  # the HTTP face's cap, too


class GoSdk:
    """nacos-sdk-go 2.3.5 as Higress' McpBridge runs it, from the SDK's source: typed
    responses (an error code inside one is not an exception), a redo of every subscription
    after each reconnect, and a service cache that drops stale pushes and, with
    UpdateCacheWhenEmpty false (Higress' setting), empty ones."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.subscribed: list[str] = []
        self.cache = GoSdkCache()
        self.client: Client | None = None
        self.dropped_empty = 0

    async def connect(self) -> None:
        self.client = Client(self.port)
        await self.client.setup()
        self.client.received.clear()
        await self.redo()

    async def redo(self) -> list[int]:
        """Subscribe to everything at once; the codes answered (the SDK logs and moves on)."""
        assert self.client is not None
        answers = await asyncio.gather(*(self.client.call("SubscribeServiceRequest", {
            **SUB, "requestId": f"redo-{i}", "serviceName": name}) for i, name in enumerate(self.subscribed)))
        for _, body in answers:
            self.offer(body.get("serviceInfo") or {})
        return [body["errorCode"] for _, body in answers]

    def offer(self, info: dict[str, Any]) -> None:
        if not info:
            return
        if not info.get("hosts"):
            self.dropped_empty += 1  # UpdateCacheWhenEmpty = false
            return
        self.cache.offer(info)

    def absorb_pushes(self) -> None:
        assert self.client is not None
        for kind, body in self.client.received:
            if kind == "NotifySubscriberRequest":
                self.offer(body["serviceInfo"])
        self.client.received.clear()

    async def reconnect(self) -> list[int]:
        assert self.client is not None
        await self.client.close()
        self.client = Client(self.port)
        await self.client.setup()
        return await self.redo()


async def test_higress_mcp_bridge_rules_hold_through_a_reconnect(plane: Plane) -> None:
    """Higress' first sync subscribes to every service at once, and the SDK redoes it all
    after a reconnect: every subscription succeeds, every change is kept. The one gap is
    the SDK's own: an emptied service's last instance stays in its cache (docs/istio-higress.md:
    MCP removes it; this path cannot)."""
    writer = Client(grpc_port(plane))
    await writer.setup()
    sdk = GoSdk(grpc_port(plane))
    try:
        for i in range(600):  # past the old limit's burst (400)
            assert (await writer.call("PersistentInstanceRequest", register(9000 + i % 3, f"svc-{i}")))[1][
                "errorCode"] == 0
        sdk.subscribed = [f"svc-{i}" for i in range(600)]
        await sdk.connect()
        assert len(sdk.cache.held) == 600 and sdk.cache.lost == 0
        assert set(await sdk.reconnect()) == {0}  # the redo: all 600 again, none refused
        await writer.call("PersistentInstanceRequest", register(9100, "svc-7"))
        await eventually(lambda: (sdk.absorb_pushes() or True) and any(
            h["port"] == 9100 for h in sdk.cache.held["svc-7"]["hosts"]), what="a change after the redo kept")
        assert sdk.cache.lost == 0  # never stale, across the reconnect
        for port in (9001, 9100):  # svc-7 loses its last instances
            await writer.call("PersistentInstanceRequest", {**register(port, "svc-7"), "type": "deregisterInstance"})
        await eventually(lambda: not svc_instances(plane, "svc-7"), what="svc-7 emptied")
        await eventually(lambda: (sdk.absorb_pushes() or True) and sdk.dropped_empty > 0, what="the empty push")
        assert [h["port"] for h in sdk.cache.held["svc-7"]["hosts"]] == [9100]  # the SDK's gap
    finally:
        await writer.close()
        if sdk.client is not None:
            await sdk.client.close()


def svc_instances(plane: Plane, name: str) -> list[int]:
    svc = next((s for k, s in plane.cp.registry.services.items() if k.name == name), None)
    return [] if svc is None else [i.port for i in svc.instances]
