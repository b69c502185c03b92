"""Worker processes: a relay that follows the owner's cache, and ``serve --workers``
spreading streams over processes that all serve the same versions."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from xdscp.cache.cache import SnapshotCache
from xdscp.config import McpConfig
from xdscp.local.control_plane import XdscpProcess
from xdscp.type_urls import CLUSTER, ENDPOINT, MCP_RESOURCE, PUSH_ORDER, SERVICE_ENTRY, VIRTUAL_HOST
from xdscp.workers.relay import CacheRelay, into_cache

from plane import Plane, running_plane, service, start_plane, write_registry
from waiting import eventually, until
from xds_client import node, sotw_request, sotw_stream


def versions(cache: SnapshotCache) -> dict[str, str] | None:
    snap = cache.get()
    return None if snap is None else {t: snap.get(t).version for t in PUSH_ORDER}


async def test_relay_serves_the_owners_versions_and_follows_changes(plane: Plane) -> None:
    mirror = SnapshotCache()
    relay = CacheRelay(plane.target, into_cache(mirror))
    task = asyncio.create_task(relay.run())
    try:
        owner = plane.cp.cache
        await eventually(lambda: versions(mirror) == versions(owner), what="relay synced")
        first = versions(mirror)
        plane.write([service("echo", 9001, 9003), service("api", 9101), service("new", 9201)])
        await eventually(lambda: versions(mirror) == versions(owner) != {**first},
                         what="relay followed the change")
        snap = mirror.get()
        assert snap is not None and {"echo", "api", "new"} <= set(snap.get(CLUSTER).resources)
        # Byte for byte what the owner serves, so a stream may move between processes.
        owner_snap = owner.get()
        assert owner_snap is not None
        for t in PUSH_ORDER:
            assert snap.get(t).sotw_body() == owner_snap.get(t).sotw_body()
    finally:
        task.cancel()


async def test_relay_carries_istio_service_entries_byte_for_byte(tmp_path: Path) -> None:
    plane = await start_plane(tmp_path, [service("echo", 9001, 9002)], mcp=McpConfig(enabled=True))
    mirror = SnapshotCache()
    task = asyncio.create_task(CacheRelay(plane.target, into_cache(mirror)).run())
    try:
        await plane.wait_published(1)

        def entries(cache: SnapshotCache) -> bytes | None:
            snap = cache.get()
            return None if snap is None else snap.get(SERVICE_ENTRY).sotw_body()

        await eventually(lambda: entries(mirror) == entries(plane.cp.cache) != b"", what="relayed")
        # The Any inside is an istio.mcp.v1alpha1.Resource, not the collection's type URL.
        assert MCP_RESOURCE.encode() in (entries(mirror) or b"")
    finally:
        task.cancel()
        await plane.cp.stop(0)


async def test_relay_mirrors_every_virtual_host_on_demand(tmp_path: Path) -> None:
    """On demand, an Envoy's VHDS "*" is the route configuration's namespace, never every
    virtual host; a worker's relay (node.cluster xdscp-workers) must still get them all,
    since its workers answer Envoys by Host from what it holds."""
    async with running_plane(tmp_path, [service("echo", 9001), service("api", 9101)], listener={
            "address": "127.0.0.1", "port": 10000, "on_demand": True}) as plane:

        def vhosts(cache: SnapshotCache) -> dict[str, str] | None:
            snap = cache.get()
            return None if snap is None else {n: r.version for n, r in snap.get(VIRTUAL_HOST).resources.items()}

        mirror = SnapshotCache()
        task = asyncio.create_task(CacheRelay(plane.target, into_cache(mirror)).run())
        try:
            await eventually(lambda: vhosts(mirror) == vhosts(plane.cp.cache), what="virtual hosts relayed")
            assert set(vhosts(mirror) or {}) == {"ingress_http/echo", "ingress_http/api"}
            plane.write([service("echo", 9001), service("api", 9101), service("new", 9201)])
            await eventually(lambda: "ingress_http/new" in (vhosts(mirror) or {}), what="a new one relayed")
            mine, owners = mirror.get(), plane.cp.cache.get()
            assert mine is not None and owners is not None
            assert mine.get(VIRTUAL_HOST).sotw_body() == owners.get(VIRTUAL_HOST).sotw_body()
            plane.write([service("echo", 9001), service("api", 9101)])
            await eventually(lambda: vhosts(mirror) == vhosts(plane.cp.cache), what="a removal relayed")
        finally:
            task.cancel()


@pytest.fixture
def two_workers(tmp_path: Path) -> AsyncIterator[XdscpProcess]:
    registry = tmp_path / "registry.yaml"
    write_registry(registry, [service("echo", 9001, 9002), service("api", 9101)])
    xdscp = XdscpProcess(tmp_path, registry, xds_settings={"workers": 2}).start()
    try:
        yield xdscp
    finally:
        xdscp.stop()


async def test_serve_with_two_workers_spreads_streams_and_serves_one_version(two_workers: XdscpProcess,
                                                                             tmp_path: Path) -> None:
    xdscp = two_workers
    ready = xdscp.admin("/readyz")
    assert ready["ready"] is True and ready["workers"] == {"followers": 1, "following": 1}
    # Separate channels: separate TCP connections, which SO_REUSEPORT spreads over the
    # two processes (all 16 landing on one has probability 2 * 2**-16).
    channels = [grpc.aio.insecure_channel(xdscp.xds_address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(16)]
    streams = [sotw_stream(ch) for ch in channels]
    try:
        for i, s in enumerate(streams):
            s.send(sotw_request(ENDPOINT, ["echo", "api"], with_node=node(f"n{i}")))
        firsts = await asyncio.gather(*(s.recv(10) for s in streams))
        assert len({r.version_info for r in firsts}) == 1
        on_owner = [n for n in xdscp.admin("/debug/nodes")["nodes"] if n["node_id"].startswith("n")]
        assert 0 < len(on_owner) < 16, "every stream on one process: the port is not shared"

        for s, r in zip(streams, firsts, strict=True):
            s.send(sotw_request(ENDPOINT, ["echo", "api"], version=r.version_info, nonce=r.nonce))
        write_registry(tmp_path / "registry.yaml", [service("echo", 9001, 9002, 9003), service("api", 9101)])
        pushed = await asyncio.gather(*(s.recv(10) for s in streams))
        assert len({r.version_info for r in pushed}) == 1 and pushed[0].version_info != firsts[0].version_info
        assert {r.resources[0].SerializeToString() for r in pushed} == {pushed[0].resources[0].SerializeToString()}
    finally:
        await asyncio.gather(*(s.close() for s in streams))
        await asyncio.gather(*(ch.close() for ch in channels))


def test_a_killed_worker_is_replaced(two_workers: XdscpProcess) -> None:
    nodes = two_workers.admin("/debug/nodes")["nodes"]
    relay = [n for n in nodes if n["cluster"] == "xdscp-workers"]
    assert len(relay) == 1
    pid = int(relay[0]["node_id"].rsplit("-", 1)[1])
    os.kill(pid, signal.SIGKILL)

    def replaced() -> bool:
        now = [n for n in two_workers.admin("/debug/nodes")["nodes"] if n["cluster"] == "xdscp-workers"]
        return len(now) == 1 and now[0]["node_id"] != relay[0]["node_id"]

    until(replaced, timeout=15, what="a new worker following the owner")
    assert two_workers.admin("/readyz")["ready"] is True
