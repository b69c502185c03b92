"""Wires the stages together: sources -> registry -> translation -> cache -> xDS server."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import signal
import sqlite3
import ssl
from typing import Any

from aiohttp import web
from grpc import aio

from xdscp.admin.debug import DebugApi
from xdscp.admin.http import build_admin_app
from xdscp.background import cancel_and_wait, supervised
from xdscp.cache.cache import SnapshotCache
from xdscp.cache.node_group import node_grouper
from xdscp.config import (
    Config,
    ConsulSourceConfig,
    EtcdSourceConfig,
    FileSourceConfig,
    HttpSourceConfig,
    NacosSourceConfig,
    SourceConfig,
    ZooKeeperSourceConfig,
    split_host_port,
)
from xdscp.errors import BindError, ConfigError
from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.server.authorization import TOKEN_PREFIX, Rule
from xdscp.server.rest import RestXds
from xdscp.server.services import bind_xds, build_xds_server, end_streams
from xdscp.server.stream import ServerEnv
from xdscp.server.tracker import StreamTracker
from xdscp.server.xds_settings import node_policy, stream_limits, tls_credentials
from xdscp.sources.base import Source
from xdscp.sources.consul import ConsulSource
from xdscp.sources.embedded.checks import CheckSettings
from xdscp.sources.embedded.source import EmbeddedSettings, EmbeddedSource, EtcdStoreSettings
from xdscp.sources.etcd.source import EtcdSource
from xdscp.sources.file import FileSource
from xdscp.sources.http import HttpSource
from xdscp.sources.nacos.source import NacosSource
from xdscp.sources.zookeeper.source import ZooKeeperSource
from xdscp.translation.placeholders import missing_resource
from xdscp.translation.publisher import Publisher
from xdscp.translation.service_entries import McpSettings
from xdscp.translation.translator import ListenerSettings, SourceSettings, Translator
from xdscp.workers.pool import WorkerPool
from xdscp.workers.relay import WORKERS_CLUSTER

log = logging.getLogger("xdscp")

RELAY_IDENTITY = "xdscp-workers"

def build_source(name: str, cfg: SourceConfig) -> Source:
    if isinstance(cfg, FileSourceConfig):
        return FileSource(name, cfg.path, cfg.poll_interval)
    if isinstance(cfg, HttpSourceConfig):
        return HttpSource(name, cfg.url, cfg.interval, cfg.timeout, cfg.headers)
    if isinstance(cfg, EtcdSourceConfig):
        return EtcdSource(name, cfg.endpoints, cfg.prefix, cfg.timeout, cfg.username, cfg.password)
    if isinstance(cfg, ConsulSourceConfig):
        return ConsulSource(name, cfg.address, cfg.datacenter, cfg.token, cfg.warning_as, cfg.wait, cfg.timeout)
    if isinstance(cfg, ZooKeeperSourceConfig):
        return ZooKeeperSource(name, cfg.hosts, cfg.root, cfg.namespace, cfg.session_timeout, cfg.timeout,
                               cfg.username, cfg.password)
    if isinstance(cfg, NacosSourceConfig):
        return NacosSource(name, cfg.servers, cfg.namespace, tuple(cfg.groups), cfg.api_version, cfg.interval,
                           cfg.timeout, cfg.username, cfg.password, cfg.access_token, cfg.transport, cfg.grpc_port)
    chk = cfg.instance_check
    checks = CheckSettings(chk.type, chk.path, tuple(chk.expected_statuses), chk.interval, chk.timeout,
                           chk.healthy_threshold, chk.unhealthy_threshold) if chk.enabled else None
    e = cfg.etcd  # set exactly when store is etcd (the config checks it)
    etcd = EtcdStoreSettings(e.endpoints, e.prefix, e.timeout, e.username, e.password,
                             e.leader_ttl) if e is not None else None
    try:
        return EmbeddedSource(name, EmbeddedSettings(cfg.database, cfg.heartbeat_unhealthy_after,
                                                     cfg.heartbeat_remove_after, cfg.expiry_interval, checks, etcd))
    except (sqlite3.Error, OSError) as e:
        raise ConfigError(f"cannot open the embedded registry database {cfg.database}: {e}") from None


def build_sources(cfg: Config) -> list[Source]:
    names = cfg.source_names()
    return [build_source(name, src) for name, src in zip(names, cfg.sources, strict=True)]


class ControlPlane:
    """One xdscp process: start() binds the ports and starts watching, stop() undoes it."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.sources = build_sources(cfg)
        self.registry = Registry((s.name for s in self.sources), cfg.source_priorities())
        lc = cfg.listener
        self.translator = Translator(
            ListenerSettings(lc.name, lc.address, lc.port, lc.route_config_name or lc.name),
            SourceSettings(cfg.xds.config_source, cfg.xds.xds_cluster, cfg.xds.rest_refresh_delay),
            McpSettings(cfg.mcp.namespace, cfg.mcp.host_suffix, cfg.mcp.service_port, cfg.mcp.workload_entries)
            if cfg.mcp.enabled else None,
        )
        self.cache = SnapshotCache()
        self.tracker = StreamTracker()
        self.publisher = Publisher(self.registry, self.translator, self.cache, cfg.xds.debounce,
                                   cfg.xds.debounce_max)
        # Followers (serve --workers) relay this process's cache over a loopback stream; with a
        # node policy in force, they prove themselves with a token made for this run.
        self._relay_token = secrets.token_urlsafe(32)
        relay = cfg.authorization.rules and cfg.xds.workers > 1
        policy = node_policy(
            cfg.authorization,
            [Rule(TOKEN_PREFIX + RELAY_IDENTITY, ("xdscp-worker-*",), ("*",))] if relay else [],
            {RELAY_IDENTITY: self._relay_token} if relay else None)
        self.env = ServerEnv(self.cache, node_grouper(cfg.node_group_by), self.tracker, missing_resource,
                             policy=policy, limits=stream_limits(cfg.xds.limits))
        self._tasks: list[asyncio.Task[None]] = []
        self._grpc: aio.Server | None = None
        self._admin: web.AppRunner | None = None
        self._admin_ro: web.AppRunner | None = None
        self.admin_read_only_port = 0
        self._pool: WorkerPool | None = None
        self.xds_port = 0
        self.admin_port = 0

    def readiness(self) -> dict[str, Any]:
        followers = self.cfg.xds.workers - 1
        following = self.tracker.count_cluster(WORKERS_CLUSTER) if followers else 0
        return {
            "ready": self.publisher.published > 0 and self.xds_port > 0 and following >= followers,
            "workers": {"followers": followers, "following": following},
            "sources": {s.name: {"synced": self.registry.is_synced(s.name),
                                 "last_error": s.last_error} for s in self.sources},
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
        if not self.sources:
            self.publisher.publish(set())  # no sources: serve the listener with no services
        self._tasks.append(asyncio.create_task(supervised("publisher", self.publisher.run)))
        for src in self.sources:
            run = functools.partial(src.run, self.registry)
            self._tasks.append(asyncio.create_task(supervised(f"source:{src.name}", run)))

        workers = self.cfg.xds.workers
        server = self._grpc = build_xds_server(self.env, reuse_port=workers > 1,
                                               max_message_bytes=self.cfg.xds.limits.max_message_bytes)
        self.xds_port = bind_xds(server, self.cfg.xds.address, tls_credentials(self.cfg.xds.tls))
        self._warn_if_open()
        relay_port = bind_xds(server, "127.0.0.1:0") if workers > 1 else 0
        await server.start()
        xds_host = split_host_port(self.cfg.xds.address)[0]
        if workers > 1:
            # The other workers share the xDS port (SO_REUSEPORT) and follow this
            # process's cache over a loopback port of its own.
            self._pool = WorkerPool(workers - 1, f"127.0.0.1:{relay_port}", f"{xds_host}:{self.xds_port}",
                                    self.cfg.node_group_by, self._follower_settings())
            await self._pool.start()

        debug = DebugApi(self.cache, self.registry, self.sources, self.cfg.source_priorities())
        routes = [r for src in self.sources for r in src.routes()] + RestXds(self.env).routes() + debug.routes()
        runner = web.AppRunner(build_admin_app(self.tracker, self.readiness, routes, self.cfg.admin.write_token),
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
            ro = web.AppRunner(build_admin_app(self.tracker, self.readiness, routes, read_only_app=True),
                               access_log=None)
            await ro.setup()
            self._admin_ro = ro
            ro_host, ro_port = split_host_port(self.cfg.admin.read_only_address)
            try:
                await web.TCPSite(ro, ro_host, ro_port, ssl_context=ssl_context).start()
            except OSError as e:
                raise BindError("admin (read-only)", self.cfg.admin.read_only_address, e.strerror or str(e)) from None
            self.admin_read_only_port = ro.addresses[0][1]
        log_event(log, logging.INFO, "xdscp.started", xds=f"{xds_host}:{self.xds_port}",
                  admin=f"{host}:{self.admin_port}", sources=[s.name for s in self.sources])

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
        xds = self.cfg.xds
        return {"limits": xds.limits.model_dump(), "shutdown_grace": xds.shutdown_grace,
                "tls": xds.tls.model_dump(mode="json") if xds.tls is not None else None,
                "authorization": self.cfg.authorization.model_dump(mode="json"),
                "relay_token": None if self.env.policy.open else self._relay_token}

    def _warn_if_open(self) -> None:
        host, _ = split_host_port(self.cfg.xds.address)
        loopback = host in ("localhost", "::1") or host.startswith("127.")
        if not loopback and (self.env.policy.open or self.cfg.xds.tls is None):
            log_event(log, logging.WARNING, "xds.open", address=self.cfg.xds.address,
                      tls=self.cfg.xds.tls is not None, authorization=not self.env.policy.open,
                      hint="any client that reaches this port may claim any node: set xds.tls "
                           "(client_ca_file for mTLS) and authorization rules")

    async def stop(self, grace: float = 1.0) -> None:
        """Refuse new streams, end the open ones with UNAVAILABLE once their in-flight sends
        are written (clients reconnect to another replica), then stop; within ``grace`` seconds."""
        deadline = asyncio.get_running_loop().time() + grace
        closed, left = await end_streams(self.env, deadline)
        log_event(log, logging.INFO, "xdscp.stopping", streams_closed=closed, streams_left=left)
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        for src in self.sources:
            src.close()
        if self._pool is not None:
            await self._pool.stop()
            self._pool = None
        if self._grpc is not None:
            await self._grpc.stop(max(0.0, deadline - asyncio.get_running_loop().time()))
            self._grpc = None
        for runner in (self._admin, self._admin_ro):
            if runner is not None:
                await runner.cleanup()
        self._admin = self._admin_ro = None
        log_event(log, logging.INFO, "xdscp.stopped")


async def serve_forever(cfg: Config) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully."""
    cp = ControlPlane(cfg)
    await cp.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await cp.stop(cfg.xds.shutdown_grace)
