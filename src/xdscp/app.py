"""Wires the stages together: sources -> registry -> translation -> cache -> xDS server."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import ssl
from typing import Any

from aiohttp import web

from xdscp import runtime_settings
from xdscp.addresses import split_host_port
from xdscp.admin.console.pages import Console
from xdscp.admin.debug import DebugApi
from xdscp.admin.http import build_admin_app
from xdscp.background import cancel_and_wait, supervised
from xdscp.config import Config
from xdscp.errors import BindError, ConfigError
from xdscp.logfmt import log_event
from xdscp.metrics import SOURCE_UP
from xdscp.model.registry import Registry
from xdscp.server.authorization import TOKEN_PREFIX, Rule
from xdscp.server.rest import RestXds
from xdscp.server.stream import WORKERS_CLUSTER
from xdscp.server.tls import TlsSettings
from xdscp.server.tracker import StreamTracker
from xdscp.server.xds_server import XdsServer
from xdscp.signals import stop_on_signals
from xdscp.sources.base import AdminBinding
from xdscp.sources.embedded.source import EmbeddedSource
from xdscp.sources.kinds import build_sources
from xdscp.sources.states import SourceStates
from xdscp.translation.publisher import Publisher
from xdscp.workers.pool import WorkerPool

log = logging.getLogger("xdscp")

RELAY_IDENTITY = "xdscp-workers"


class ControlPlane:
    """One xdscp process: start() binds the ports and starts watching, stop() undoes it."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.sources = build_sources(cfg)
        self.registry = Registry((s.name for s in self.sources), cfg.source_priorities())
        self.source_states = SourceStates(self.sources, self.registry, cfg.source_priorities(),
                                          cfg.optional_sources())
        self.translator = runtime_settings.translator(cfg)
        self.credentials = runtime_settings.credentials(cfg.admin)
        self.cache = runtime_settings.snapshot_cache(cfg.xds, self.translator.localities)
        self.tracker = StreamTracker()
        self.publisher = Publisher(self.registry, self.translator, self.cache, cfg.xds.debounce,
                                   cfg.xds.debounce_max, cfg.optional_sources())
        # Followers (serve --workers) relay this process's cache over a loopback stream; with a
        # node policy in force, they prove themselves with a token made for this run.
        self._relay_token = secrets.token_urlsafe(32)
        relay = cfg.authorization.rules and cfg.xds.workers > 1
        self.policy = runtime_settings.node_policy(
            cfg.authorization,
            [Rule(TOKEN_PREFIX + RELAY_IDENTITY, ("xdscp-worker-*",), ("*",))] if relay else [],
            {RELAY_IDENTITY: self._relay_token} if relay else None)
        self._tasks: list[asyncio.Task[None]] = []
        self.xds: XdsServer | None = None
        self._admin: web.AppRunner | None = None
        self._admin_ro: web.AppRunner | None = None
        self.admin_read_only_port = 0
        self._pool: WorkerPool | None = None
        self.xds_port = 0
        self.admin_port = 0

    def readiness(self) -> dict[str, Any]:
        """/readyz: ready once a snapshot is served (and every follower follows); ``missing``
        names the sources not loaded yet: before the first snapshot, what it waits for;
        after it, optional sources served without."""
        followers = self.cfg.xds.workers - 1
        following = self.tracker.count_cluster(WORKERS_CLUSTER) if followers else 0
        states = self.source_states.states()
        return {
            "ready": self.publisher.published > 0 and self.xds_port > 0 and following >= followers,
            "workers": {"followers": followers, "following": following},
            "missing": [st.name for st in states if not st.synced],
            "sources": {st.name: {"synced": st.synced, "required": st.required, "up": st.up,
                                  "last_error": st.last_error} for st in states},
            "version": self.publisher.last_version,
        }

    async def start(self) -> None:
        """Bind both ports and start watching; on failure, undo what was started and raise."""
        try:
            await self._start()
        except BaseException:
            await self.stop(0)
            raise

    async def _start(self) -> None:
        SOURCE_UP.observe(self.source_states.up)
        if not self.sources:
            self.publisher.publish(set())  # no sources: serve the listener with no services
        self._tasks.append(asyncio.create_task(supervised("publisher", self.publisher.run)))
        for src in self.sources:
            run = functools.partial(src.run, self.registry)
            self._tasks.append(asyncio.create_task(supervised(f"source:{src.name}", run)))

        workers = self.cfg.xds.workers
        settings = runtime_settings.xds_server_settings(self.cfg.xds, self.policy, self.cfg.node_group_by)
        xds = self.xds = XdsServer(self.cache, settings, self.tracker)
        relay_port = xds.add_port("127.0.0.1:0") if workers > 1 else 0
        self.xds_port = await xds.start()
        self._warn_if_open()
        xds_host = split_host_port(self.cfg.xds.address)[0]
        if workers > 1:
            # The other workers share the xDS port (SO_REUSEPORT) and follow this
            # process's cache over a loopback port of its own.
            self._pool = WorkerPool(workers - 1, f"127.0.0.1:{relay_port}", f"{xds_host}:{self.xds_port}",
                                    self.cfg.node_group_by, self._follower_settings())
            await self._pool.start()

        debug = DebugApi(self.cache, self.tracker, self.registry, self.source_states)
        routes = [r for src in self.sources for r in src.routes()] + RestXds(xds.env).routes() + debug.routes()
        console = [*routes, *self._console(writable=True).routes()]
        runner = web.AppRunner(build_admin_app(self.tracker, self.readiness, console, self.credentials),
                               access_log=None)
        await runner.setup()
        host, port = split_host_port(self.cfg.admin.address)
        self._admin = runner
        ssl_context = self._admin_ssl()
        try:
            await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        except OSError as e:
            raise BindError("admin", self.cfg.admin.address, e.strerror or str(e)) from None
        self.admin_port = runner.addresses[0][1]
        if self.cfg.admin.read_only_address is not None:
            read_only = [*routes, *self._console(writable=False).routes()]
            ro = web.AppRunner(build_admin_app(self.tracker, self.readiness, read_only, read_only_app=True),
                               access_log=None)
            await ro.setup()
            self._admin_ro = ro
            ro_host, ro_port = split_host_port(self.cfg.admin.read_only_address)
            try:
                await web.TCPSite(ro, ro_host, ro_port, ssl_context=ssl_context).start()
            except OSError as e:
                raise BindError("admin (read-only)", self.cfg.admin.read_only_address, e.strerror or str(e)) from None
            self.admin_read_only_port = ro.addresses[0][1]
        admin_tls = self.cfg.admin.tls
        binding = AdminBinding(host, self.admin_port, self.credentials,
                               TlsSettings(admin_tls.cert_file, admin_tls.key_file) if admin_tls else None)
        for src in self.sources:
            await src.open_ports(binding)
        log_event(log, logging.INFO, "xdscp.started", xds=f"{xds_host}:{self.xds_port}",
                  admin=f"{host}:{self.admin_port}", sources=[s.name for s in self.sources])

    def _console(self, writable: bool) -> Console:
        """The web console at /ui/; without ``writable``, its pages have no actions."""
        stores = {src.name: src.store for src in self.sources if isinstance(src, EmbeddedSource)}
        return Console(self.registry, self.source_states, self.tracker, self.cache, self.publisher.log, stores,
                       locality_default=self.cfg.xds.locality_failover, writable=writable,
                       token_needed=self.credentials.writes_guarded)

    def _admin_ssl(self) -> ssl.SSLContext | None:
        tls = self.cfg.admin.tls
        if tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"admin TLS files ({tls.cert_file}, {tls.key_file}): {e}") from None
        return context

    def _follower_settings(self) -> dict[str, Any]:
        """What a follower needs to serve the port as this process does (see run_follower)."""
        return {"xds": self.cfg.xds.model_dump(mode="json"),
                "authorization": self.cfg.authorization.model_dump(mode="json"),
                "relay_token": None if self.policy.open else self._relay_token}

    def _warn_if_open(self) -> None:
        host, _ = split_host_port(self.cfg.xds.address)
        loopback = host in ("localhost", "::1") or host.startswith("127.")
        if not loopback and (self.policy.open or self.cfg.xds.tls is None):
            log_event(log, logging.WARNING, "xds.open", address=self.cfg.xds.address,
                      tls=self.cfg.xds.tls is not None, authorization=not self.policy.open,
                      hint="any client that reaches this port may claim any node: set xds.tls "
                           "(client_ca_file for mTLS) and authorization rules")

    async def stop(self, grace: float = 1.0) -> None:
        """Refuse new streams, end the open ones with UNAVAILABLE once their in-flight sends
        are written (clients reconnect to another replica), then stop; within ``grace`` seconds."""
        deadline = asyncio.get_running_loop().time() + grace
        closed = left = 0
        if self.xds is not None:
            closed, left = await self.xds.stop(deadline)
            self.xds = None
        log_event(log, logging.INFO, "xdscp.stopping", streams_closed=closed, streams_left=left)
        for src in self.sources:
            await src.close_ports(max(0.0, deadline - asyncio.get_running_loop().time()))
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        for src in self.sources:
            src.close()
        if self._pool is not None:
            await self._pool.stop(self.cfg.xds.shutdown_grace)  # each follower ends its own streams in that
            self._pool = None
        for runner in (self._admin, self._admin_ro):
            if runner is not None:
                await runner.cleanup()
        self._admin = self._admin_ro = None
        SOURCE_UP.forget(self.source_states.up)
        log_event(log, logging.INFO, "xdscp.stopped")


async def serve_forever(cfg: Config) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully."""
    cp = ControlPlane(cfg)
    await cp.start()
    stop = stop_on_signals()
    try:
        await stop.wait()
    finally:
        await cp.stop(cfg.xds.shutdown_grace)
