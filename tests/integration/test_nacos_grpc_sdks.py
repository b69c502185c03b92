"""Today's Nacos SDKs against the embedded registry's gRPC face, unchanged: each is given
the admin address as a Nacos server address and finds gRPC at + 1000 itself.

Every change is asserted where Envoy sees it: in the ClusterLoadAssignment an ADS
subscriber holds (tests/xds_client.follow_assignments).
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from xdscp.local.ports import free_port_pair
from xdscp.nacos_protocol import GRPC_PORT_OFFSET, REQUEST_METHOD, decode, encode

from nacos_node_sdk import node_available, start_node_sdk
from nacos_sdk_venv import PYTHON_3, RUST, Sdk, SdkProcess, start_sdk
from plane import Plane, embedded_source, running_plane, start_plane
from tls_certs import make_ca, make_cert
from waiting import eventually
from xds_client import follow_assignments


class Stack:
    """A plane on the embedded registry, and an ADS subscriber following some assignments."""

    def __init__(self, plane: Plane, tmp_path: Path) -> None:
        self.plane = plane
        self.tmp_path = tmp_path
        self.held: dict[str, Any] = {}
        self._channel = grpc.aio.insecure_channel(plane.target)
        self._follower: asyncio.Task[None] | None = None
        self._sdks: list[SdkProcess] = []

    @property
    def http_port(self) -> int:
        return self.plane.cp.admin_port

    def follow(self, *names: str) -> None:
        self._follower = asyncio.create_task(follow_assignments(
            self._channel, list(names), "sdk-test", False, self.held,
            lambda cla: sorted(e.endpoint.address.socket_address.port_value
                               for loc in cla.endpoints for e in loc.lb_endpoints)))

    async def sdk(self, sdk: Sdk, env: dict[str, str] | None = None, **login: str) -> SdkProcess:
        client = await start_sdk(sdk, self.http_port, self.tmp_path / f"sdk-{len(self._sdks)}", env=env, **login)
        self._sdks.append(client)
        return client

    async def assignment(self, name: str, ports: list[int], what: str) -> None:
        await eventually(lambda: self.held.get(name) == ports, timeout=30, what=f"{what}: {name} -> {ports}")

    async def http(self, method: str, path: str, **params: str) -> int:
        """A Nacos Open API call (as a 1.x client or an admin makes it), off the event loop."""
        url = f"http://127.0.0.1:{self.http_port}{path}?{urllib.parse.urlencode(params)}"

        def call() -> int:
            with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
                return int(r.status)

        return await asyncio.to_thread(call)

    async def close(self) -> None:
        for client in self._sdks:
            await client.close()
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower
        await self._channel.close()
        await self.plane.cp.stop(0)


async def start_stack(tmp_path: Path, **embedded: Any) -> Stack:
    port = free_port_pair(GRPC_PORT_OFFSET)  # the SDKs' own rule: gRPC at the HTTP port + 1000
    plane = await start_plane(tmp_path, None, sources=[embedded_source(tmp_path, **embedded)],
                              admin={"address": f"127.0.0.1:{port}"})
    await plane.wait_published(1)
    return Stack(plane, tmp_path)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    s = await start_stack(tmp_path)
    try:
        yield s
    finally:
        await s.close()


async def test_python_sdk_3_registers_is_pushed_deregisters_and_dies_with_its_process(stack: Stack) -> None:
    stack.follow("echo")
    app = await stack.sdk(PYTHON_3)
    assert await app.do("subscribe echo") == "ok subscribe"
    assert await app.do("register echo 9001") == "ok register"
    await stack.assignment("echo", [9001], "registered over gRPC")
    # an instance registered over HTTP (a 1.x client, an admin) is pushed to the subscriber
    assert await stack.http("POST", "/nacos/v1/ns/instance", serviceName="echo", ip="127.0.0.1", port="9002",
                      ephemeral="false") == 200
    await stack.assignment("echo", [9001, 9002], "registered over HTTP")
    await eventually(lambda: ("echo", [9001, 9002]) in app.pushes, timeout=30, what="the HTTP one pushed")
    assert await app.do("deregister echo 9001") == "ok deregister"
    await stack.assignment("echo", [9002], "deregistered over gRPC")
    await eventually(lambda: app.pushes[-1] == ("echo", [9002]), timeout=30, what="the removal pushed")
    # a second process registers, then dies without a word: its connection closes, its instance goes
    doomed = await stack.sdk(PYTHON_3)
    assert await doomed.do("register echo 9003") == "ok register"
    await stack.assignment("echo", [9002, 9003], "second process registered")
    doomed.kill()
    await stack.assignment("echo", [9002], "its process killed")


async def test_python_sdk_3_the_last_instance_going_empties_the_assignment(stack: Stack) -> None:
    stack.follow("solo")
    app = await stack.sdk(PYTHON_3)
    assert await app.do("register solo 9101") == "ok register"
    await stack.assignment("solo", [9101], "registered")
    app.kill()
    await stack.assignment("solo", [], "the last one's process killed")


async def test_python_sdk_3_registers_persistent_instances_over_grpc(stack: Stack) -> None:
    # the server advertises supportPersistentInstanceByGrpc, so the SDK sends PersistentInstanceRequest;
    # a persistent instance outlives the connection that registered it
    stack.follow("db")
    app = await stack.sdk(PYTHON_3)
    assert await app.do("persistent db 9201") == "ok persistent"
    await stack.assignment("db", [9201], "persistent registered")
    await app.close()
    await asyncio.sleep(0.5)
    svc = stack.plane.cp.registry.services
    assert [(i.port, i.ephemeral) for s in svc.values() if s.name == "db" for i in s.instances] == [(9201, False)]


async def test_python_sdk_3_batch_registration_replaces_the_connections_set(stack: Stack) -> None:
    stack.follow("pool")
    app = await stack.sdk(PYTHON_3)
    assert await app.do("batch pool 9301,9302,9303") == "ok batch"
    await stack.assignment("pool", [9301, 9302, 9303], "batch registered")
    assert await app.do("batch pool 9302") == "ok batch"
    await stack.assignment("pool", [9302], "batch replaced")
    assert await app.do("list pool") == "ok list"
    assert app.listed[-1] == ("pool", [9302])


async def test_rust_sdk_registers_lists_and_deregisters(stack: Stack) -> None:
    stack.follow("rusty")
    app = await stack.sdk(RUST)
    assert await app.do("register rusty 9401") == "ok register"
    await stack.assignment("rusty", [9401], "registered by the Rust SDK")
    assert await app.do("list rusty") == "ok list"
    assert app.listed[-1] == ("rusty", [9401])
    assert await app.do("deregister rusty 9401") == "ok deregister"
    await stack.assignment("rusty", [], "deregistered by the Rust SDK")
    assert await app.do("register rusty 9402") == "ok register"
    await stack.assignment("rusty", [9402], "registered again")
    app.kill()
    await stack.assignment("rusty", [], "its process killed")


async def test_dubbo_provider_names_register_over_grpc_and_http(stack: Stack) -> None:
    name = "providers:org.demo.DemoService:1.0.0:"
    app = await stack.sdk(PYTHON_3)
    assert await app.do(f"register {name} 9501") == "ok register"
    assert await stack.http("POST", "/nacos/v1/ns/instance", serviceName=name, ip="127.0.0.1", port="9502") == 200
    await eventually(lambda: any(s.name == name and len(s.instances) == 2
                                 for s in stack.plane.cp.registry.services.values()), timeout=30,
                     what="both Dubbo providers registered")
    assert await app.do(f"list {name}") == "ok list"
    assert app.listed[-1] == (name, [9501, 9502])


@pytest.mark.skipif(not node_available(), reason="node and npm are needed for the Node SDK")
async def test_the_node_sdk_2_6_registers_over_http_and_its_instances_expire_with_it(tmp_path: Path) -> None:
    # The HTTP clients keep working beside the gRPC ones: npm nacos 2.6 registers ephemeral
    # instances and heartbeats; once its process is gone, the heartbeat rule removes them.
    s = await start_stack(tmp_path, heartbeat_unhealthy_after=12.0, heartbeat_remove_after=15.0)
    try:
        s.follow("node-echo")
        app = await start_node_sdk(s.http_port)
        try:
            assert await app.do("subscribe node-echo") == "ok subscribe"
            assert await app.do("register node-echo 9601") == "ok register"
            assert await app.do("register node-echo 9602") == "ok register"
            await s.assignment("node-echo", [9601, 9602], "registered by the Node SDK")
            await eventually(lambda: ("node-echo", [9601, 9602]) in app.pushes, timeout=30, what="Node SDK told")
            assert await app.do("deregister node-echo 9601") == "ok deregister"
            await s.assignment("node-echo", [9602], "deregistered by the Node SDK")
            await asyncio.sleep(16)  # past heartbeat_remove_after (its beats come every 5 s): they keep 9602
            assert s.held.get("node-echo") == [9602]
        finally:
            await app.close()
        await eventually(lambda: s.held.get("node-echo") == [], timeout=60, what="its process gone, its beats stopped")
    finally:
        await s.close()


async def test_python_sdk_3_registers_over_tls_and_plain_text_or_a_wrong_ca_is_refused(tmp_path: Path) -> None:
    """nacos_grpc.tls: the SDK's own TLS config (it presents a client pair; the server asks
    for none without client_ca_file). A plain-text client, or one that trusts another CA,
    gets no answer at all: the access tokens a client sends never cross in clear."""
    ca, other = make_ca(tmp_path / "pki", "ca"), make_ca(tmp_path / "pki", "other-ca")
    server = make_cert(ca, tmp_path / "pki", "nacos", "IP:127.0.0.1", server=True)
    client = make_cert(ca, tmp_path / "pki", "app", "DNS:app.local", server=False)
    stack = await start_stack(tmp_path, nacos_grpc={"tls": {"cert_file": server.cert, "key_file": server.key}})
    try:
        stack.follow("echo")
        app = await stack.sdk(PYTHON_3, env={"SDK_TLS_CA": str(ca.cert), "SDK_TLS_CERT": str(client.cert),
                                             "SDK_TLS_KEY": str(client.key)})
        assert await app.do("register echo 9001") == "ok register"
        await stack.assignment("echo", [9001], "registered over TLS")
        grpc_target = f"127.0.0.1:{stack.http_port + GRPC_PORT_OFFSET}"
        check = encode("ServerCheckRequest", {"requestId": "0"})
        for channel in (grpc.aio.insecure_channel(grpc_target),
                        grpc.aio.secure_channel(grpc_target, grpc.ssl_channel_credentials(other.cert.read_bytes()))):
            async with channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await channel.unary_unary(REQUEST_METHOD)(check, timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.secure_channel(grpc_target, grpc.ssl_channel_credentials(ca.cert.read_bytes())) as ch:
            kind, body, _ = decode(await ch.unary_unary(REQUEST_METHOD)(check, timeout=10))
            assert kind == "ServerCheckResponse" and body["connectionId"]
    finally:
        await stack.close()


async def test_the_grpc_face_follows_the_admin_addresss_tls_unless_it_has_its_own(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki", "ca")
    server = make_cert(ca, tmp_path / "pki", "admin", "IP:127.0.0.1", server=True)
    port = free_port_pair(GRPC_PORT_OFFSET)
    async with running_plane(tmp_path, None, sources=[embedded_source(tmp_path)],
                              admin={"address": f"127.0.0.1:{port}",
                                     "tls": {"cert_file": server.cert, "key_file": server.key}},
                                                              published=False):
        target = f"127.0.0.1:{port + GRPC_PORT_OFFSET}"
        check = encode("ServerCheckRequest", {"requestId": "0"})
        async with grpc.aio.insecure_channel(target) as plain:
            with pytest.raises(grpc.aio.AioRpcError):
                await plain.unary_unary(REQUEST_METHOD)(check, timeout=5)
        async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca.cert.read_bytes())) as ch:
            assert decode(await ch.unary_unary(REQUEST_METHOD)(check, timeout=10))[0] == "ServerCheckResponse"
