"""The xDS server: a grpc.aio server with every xDS service, bound, started and stopped.

The owner process and its ``--workers`` followers both serve the port through this one
class, built from the same plain settings, so a stream is treated alike whichever
process took it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc import aio

from xdscp.addresses import split_host_port
from xdscp.cache.cache import SnapshotCache
from xdscp.cache.node_group import NodeGrouper
from xdscp.cache.resource import Resource
from xdscp.errors import BindError
from xdscp.server.authorization import NodePolicy
from xdscp.server.callbacks import ObservedStreams, StreamCallbacks
from xdscp.server.services import GRPC_SERVER_OPTIONS, add_xds_services
from xdscp.server.stream import ServerEnv, StreamLimits
from xdscp.server.tracker import StreamTracker


@dataclass(frozen=True, slots=True)
class XdsServerSettings:
    """How the xDS port is served (built from config by xdscp.runtime_settings)."""

    address: str  # host:port (IPv6 hosts bracketed or not)
    credentials: grpc.ServerCredentials | None  # None: plain text
    grouper: NodeGrouper
    policy: NodePolicy
    limits: StreamLimits
    max_message_bytes: int  # a larger request is refused by gRPC (RESOURCE_EXHAUSTED)
    reuse_port: bool  # worker processes share one port; else a second xdscp on it fails to bind
    placeholder: Callable[[str, str], Resource | None]  # what a named but missing resource is answered with


class XdsServer:
    """Serves ``cache`` on the configured address (and on ports added before ``start``)."""

    def __init__(self, cache: SnapshotCache, settings: XdsServerSettings, tracker: StreamTracker | None = None,
                 callbacks: StreamCallbacks | None = None) -> None:
        """``callbacks``: what observes the streams (default: metrics and logs); the stream
        limit and the drain work whatever they are."""
        self.settings = settings
        tracker = tracker if tracker is not None else StreamTracker()
        self.env = ServerEnv(cache, settings.grouper, tracker, settings.placeholder, settings.limits,
                             callbacks if callbacks is not None else ObservedStreams(), policy=settings.policy)
        options = [*GRPC_SERVER_OPTIONS, ("grpc.so_reuseport", int(settings.reuse_port)),
                   ("grpc.max_receive_message_length", settings.max_message_bytes)]
        self._server: aio.Server | None = aio.server(options=options)
        add_xds_services(self._server, self.env)
        self.port = 0

    @property
    def tracker(self) -> StreamTracker:
        return self.env.tracker

    def add_port(self, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
        """Bind one more ``host:port`` (before ``start``); the port bound, or BindError."""
        assert self._server is not None
        host, port = split_host_port(address)
        bind_to = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if credentials is not None:
                return self._server.add_secure_port(bind_to, credentials)
            return self._server.add_insecure_port(bind_to)
        except RuntimeError:  # grpc says only "Failed to bind"
            raise BindError("xDS", address, "address in use or not available") from None

    async def start(self) -> int:
        """Bind the configured address and serve; the port bound (BindError if it cannot be)."""
        assert self._server is not None
        self.port = self.add_port(self.settings.address, self.settings.credentials)
        await self._server.start()
        return self.port

    async def stop(self, deadline: float) -> tuple[int, int]:
        """Refuse new streams, wake every open one so it ends (UNAVAILABLE) after what it is
        writing, wait for them until ``deadline`` (loop time), then stop. (closed, left open)."""
        loop = asyncio.get_running_loop()
        env = self.env
        env.shutting_down.set()
        env.tracker.wake_all()
        opened = len(env.tracker)
        while len(env.tracker) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        closed, left = opened - len(env.tracker), len(env.tracker)
        if self._server is not None:
            await self._server.stop(max(0.0, deadline - loop.time()))
            self._server = None
        return closed, left
