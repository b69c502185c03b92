"""A follower worker: an xDS server on the shared port, fed by a relay from the owner."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from xdscp.cache.cache import SnapshotCache
from xdscp.cache.node_group import node_grouper
from xdscp.logfmt import log_event
from xdscp.server.services import bind_xds, build_xds_server
from xdscp.server.stream import ServerEnv
from xdscp.server.tracker import StreamTracker
from xdscp.translation.placeholders import missing_resource
from xdscp.workers.relay import CacheRelay

log = logging.getLogger(__name__)


async def run_follower(upstream: str, xds_address: str, node_group_by: str = "cluster") -> None:
    """Serve ``xds_address`` (shared with the owner) until SIGTERM/SIGINT."""
    cache = SnapshotCache()
    env = ServerEnv(cache, node_grouper(node_group_by), StreamTracker(), missing_resource)
    server = build_xds_server(env, reuse_port=True)
    port = bind_xds(server, xds_address)
    await server.start()
    relay = CacheRelay(upstream, cache)
    task = asyncio.create_task(relay.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watch = asyncio.create_task(_exit_with_parent(stop))
    log_event(log, logging.INFO, "worker.started", xds=xds_address, port=port, upstream=upstream)
    try:
        await stop.wait()
    finally:
        task.cancel()
        watch.cancel()
        await server.stop(1.0)
        log_event(log, logging.INFO, "worker.stopped", xds=xds_address)


async def _exit_with_parent(stop: asyncio.Event) -> None:
    """An orphaned worker (owner killed with SIGKILL) would keep the port serving a
    frozen snapshot; it stops instead, so Envoys reconnect to a live process."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log_event(log, logging.ERROR, "worker.orphaned", parent=parent)
    stop.set()
