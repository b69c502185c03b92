"""A follower worker: an xDS server on the shared port, fed by a relay from the owner."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from xdscp import runtime_settings
from xdscp.config import AuthorizationConfig, XdsConfig
from xdscp.logfmt import log_event
from xdscp.server.xds_server import XdsServer
from xdscp.signals import stop_on_signals
from xdscp.workers.locality_relays import RelayedLocalities
from xdscp.workers.relay import CacheRelay, into_cache

log = logging.getLogger(__name__)


async def run_follower(upstream: str, xds_address: str, node_group_by: str,
                       settings: dict[str, Any] | None = None) -> None:
    """Serve ``xds_address`` (shared with the owner) until SIGTERM/SIGINT. ``settings``: the
    owner's ``xds`` and ``authorization`` config sections, so a stream is treated alike
    whichever process took it, and ``relay_token``, which the owner's node policy admits."""
    given = settings or {}
    xds = XdsConfig.model_validate(given.get("xds") or {"workers": 2})
    policy = runtime_settings.node_policy(AuthorizationConfig.model_validate(given.get("authorization") or {}))
    localities = RelayedLocalities(upstream, given.get("relay_token"))
    cache = runtime_settings.snapshot_cache(xds, localities)
    server = XdsServer(cache, runtime_settings.xds_server_settings(xds, policy, node_group_by, xds_address))
    port = await server.start()
    relay = CacheRelay(upstream, into_cache(cache), token=given.get("relay_token"))
    task = asyncio.create_task(relay.run())
    stop = stop_on_signals()
    watch = asyncio.create_task(_exit_with_parent(stop))
    log_event(log, logging.INFO, "worker.started", xds=xds_address, port=port, upstream=upstream)
    try:
        await stop.wait()
    finally:
        # As the owner does: end every stream with UNAVAILABLE after its in-flight send.
        task.cancel()
        localities.stop()
        watch.cancel()
        await server.stop(asyncio.get_running_loop().time() + xds.shutdown_grace)
        log_event(log, logging.INFO, "worker.stopped", xds=xds_address)


async def _exit_with_parent(stop: asyncio.Event) -> None:
    """An orphaned worker (owner killed with SIGKILL) would keep the port serving a
    frozen snapshot; it stops instead, so Envoys reconnect to a live process."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log_event(log, logging.ERROR, "worker.orphaned", parent=parent)
    stop.set()
