"""A follower worker: an xDS server on the shared port, fed by a relay from the owner."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from xdscp.cache.cache import SnapshotCache
from xdscp.cache.node_group import node_grouper
from xdscp.config import AuthorizationConfig, XdsLimitsConfig, XdsTlsConfig
from xdscp.logfmt import log_event
from xdscp.server.services import bind_xds, build_xds_server, end_streams
from xdscp.server.stream import ServerEnv
from xdscp.server.tracker import StreamTracker
from xdscp.server.xds_settings import node_policy, stream_limits, tls_credentials
from xdscp.translation.placeholders import missing_resource
from xdscp.workers.relay import CacheRelay

log = logging.getLogger(__name__)


async def run_follower(upstream: str, xds_address: str, node_group_by: str = "cluster",
                       settings: dict[str, Any] | None = None) -> None:
    """Serve ``xds_address`` (shared with the owner) until SIGTERM/SIGINT. ``settings``: the
    owner's limits, ``shutdown_grace``, ``tls`` and ``authorization``, so a stream is treated
    alike whichever process took it, and ``relay_token``, which the owner's node policy admits."""
    given = settings or {}
    limits = XdsLimitsConfig.model_validate(given.get("limits") or {})
    tls = XdsTlsConfig.model_validate(given["tls"]) if given.get("tls") else None
    policy = node_policy(AuthorizationConfig.model_validate(given.get("authorization") or {}))
    cache = SnapshotCache()
    tracker = StreamTracker()
    env = ServerEnv(cache, node_grouper(node_group_by), tracker, missing_resource, policy=policy,
                    limits=stream_limits(limits))
    server = build_xds_server(env, reuse_port=True, max_message_bytes=limits.max_message_bytes)
    port = bind_xds(server, xds_address, tls_credentials(tls))
    await server.start()
    relay = CacheRelay(upstream, cache, token=given.get("relay_token"))
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
        # As the owner does: end every stream with UNAVAILABLE after its in-flight send.
        deadline = loop.time() + float(given.get("shutdown_grace", 5.0))
        await end_streams(env, deadline)
        task.cancel()
        watch.cancel()
        await server.stop(max(0.0, deadline - loop.time()))
        log_event(log, logging.INFO, "worker.stopped", xds=xds_address)


async def _exit_with_parent(stop: asyncio.Event) -> None:
    """An orphaned worker (owner killed with SIGKILL) would keep the port serving a
    frozen snapshot; it stops instead, so Envoys reconnect to a live process."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log_event(log, logging.ERROR, "worker.orphaned", parent=parent)
    stop.set()
