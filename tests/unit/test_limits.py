"""Limits: too many streams, names, requests per second or bytes end the offending stream with
RESOURCE_EXHAUSTED; everyone else is served as before."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from xdscp import runtime_settings
from xdscp.cache.cache import SnapshotCache
from xdscp.config import Config, XdsConfig
from xdscp.server.authorization import NodePolicy
from xdscp.server.callbacks import StreamCallbacks
from xdscp.server.xds_server import XdsServer
from xdscp.type_urls import CLUSTER, ENDPOINT

from plane import Plane, running_plane, service
from waiting import eventually
from xds_client import XdsStream, delta_request, delta_stream, node, sotw_request, sotw_stream


@pytest.fixture
async def tight(tmp_path: Path) -> AsyncIterator[Plane]:
    async with running_plane(tmp_path, [service("echo", 9001)], xds={"limits": {
        "max_streams": 3, "max_names": 5, "max_requests_per_second": 5, "max_message_bytes": 2048}}) as plane:
        yield plane


async def served_streams(ch: grpc.aio.Channel, count: int) -> list[XdsStream]:
    """``count`` SotW streams, each answered once (so each is counted by the server)."""
    streams = []
    for i in range(count):
        s = sotw_stream(ch)
        s.send(sotw_request(CLUSTER, with_node=node(f"n{i}")))
        await s.recv()
        streams.append(s)
    return streams


async def test_a_stream_past_max_streams_is_refused_until_one_closes(tight: Plane) -> None:
    async with grpc.aio.insecure_channel(tight.target) as ch:
        streams = await served_streams(ch, 3)
        extra = sotw_stream(ch)
        extra.send(sotw_request(CLUSTER, with_node=node("n3")))
        assert await extra.closed_with() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await streams.pop().close()
        await eventually(lambda: len(tight.cp.tracker) < 3, timeout=30, what="the server noticed the close")
        again = sotw_stream(ch)
        again.send(sotw_request(CLUSTER, with_node=node("n3")))
        assert (await again.recv()).resources
        for s in (*streams, again):
            await s.close()


async def test_too_many_names_too_many_requests_or_bytes_end_that_stream_only(
        tight: Plane, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="xdscp.server")
    async with grpc.aio.insecure_channel(tight.target) as ch:
        calm = sotw_stream(ch)
        calm.send(sotw_request(CLUSTER, with_node=node("calm")))
        first = await calm.recv()
        calm.send(sotw_request(CLUSTER, version=first.version_info, nonce=first.nonce))

        names = sotw_stream(ch)
        names.send(sotw_request(ENDPOINT, [f"c{i}" for i in range(6)], with_node=node("greedy")))
        assert await names.closed_with() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert names.error is not None and "6 resource names" in (names.error.details() or "")

        delta = delta_stream(ch)
        delta.send(delta_request(ENDPOINT, [f"c{i}" for i in range(4)], with_node=node("greedy-delta")))
        await delta.recv()
        delta.send(delta_request(ENDPOINT, ["c4", "c5"]))  # 4 + 2 > 5
        assert await delta.closed_with() == grpc.StatusCode.RESOURCE_EXHAUSTED

        chatty = sotw_stream(ch)
        chatty.send(sotw_request(CLUSTER, with_node=node("chatty")))
        for _ in range(30):
            chatty.send(sotw_request(CLUSTER, version="x", nonce="y"))
        # The server ends it with RESOURCE_EXHAUSTED; the client may instead report its own
        # failure to send the rest (grpc's INTERNAL), so the server's side is what is checked.
        assert await chatty.closed_with() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL)
        limits = [r.xdscp_fields for r in caplog.records if r.getMessage() == "xds.limit"]  # type: ignore[attr-defined]
        assert any(f.get("limit") == "request_rate" and f.get("node") == "chatty" for f in limits), limits

        big = sotw_stream(ch)
        big.send(sotw_request(CLUSTER, ["n" * 3000], with_node=node("big")))
        assert await big.closed_with() == grpc.StatusCode.RESOURCE_EXHAUSTED

        await calm.expect_silence(0.2)  # the well-behaved stream is untouched
        tight.write([service("echo", 9001, 9002)])
        _, nodes = await tight.admin_json("/debug/nodes")
        assert [n["node_id"] for n in nodes["nodes"]] == ["calm"]
        await calm.close()


async def test_the_stream_limit_and_the_drain_hold_with_callbacks_that_do_nothing() -> None:
    """The tracker is the server's own state: with the no-op StreamCallbacks (a fake that
    observes nothing) the limit still refuses the fourth stream, and stop() still drains."""
    cache = SnapshotCache()
    cache.set_all(runtime_settings.translator(Config()).snapshot)
    settings = runtime_settings.xds_server_settings(XdsConfig(limits={"max_streams": 3}), NodePolicy(), "cluster",
                                                    "127.0.0.1:0")
    server = XdsServer(cache, settings, callbacks=StreamCallbacks())
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            streams = await served_streams(ch, 3)
            assert len(server.tracker) == 3
            extra = sotw_stream(ch)
            extra.send(sotw_request(CLUSTER, with_node=node("n3")))
            assert await extra.closed_with() == grpc.StatusCode.RESOURCE_EXHAUSTED
            closed, left = await server.stop(asyncio.get_running_loop().time() + 10)
            assert (closed, left) == (3, 0)
            for s in streams:
                assert await s.closed_with() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(asyncio.get_running_loop().time())  # a no-op once stopped
