"""The embedded source: its store, heartbeat expiry, and checks of persistent instances.

With ``store: sqlite`` (one process) the source expires silent ephemeral instances itself.
With ``store: etcd`` (replicas) etcd's leases expire them, and only the replica elected
leader through etcd runs the checks, so each instance is probed once per interval.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from xdscp.errors import BindError, ConfigError
from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.nacos_protocol import GRPC_PORT_OFFSET
from xdscp.sources.base import AdminBinding
from xdscp.sources.embedded.api.nacos import NacosApi
from xdscp.sources.embedded.api.nacos_grpc.server import NacosGrpcServer, NacosGrpcSettings
from xdscp.sources.embedded.api.nacos_views import HeartbeatPolicy
from xdscp.sources.embedded.api.native import RegistryApi
from xdscp.sources.embedded.checks import CheckSettings, InstanceChecker
from xdscp.sources.embedded.database import RegistryDatabase
from xdscp.sources.embedded.etcd_store import EtcdStore
from xdscp.sources.embedded.leader import EtcdLeader
from xdscp.sources.embedded.store import EmbeddedStore
from xdscp.sources.etcd.client import EtcdAccess, EtcdClient

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EmbeddedEtcdSettings:
    """``store: etcd``: where, under which prefix, and the leader's and connections' lease TTLs."""

    access: EtcdAccess
    prefix: str
    leader_ttl: int
    connection_lease_ttl: int


@dataclass(frozen=True, slots=True)
class EmbeddedSettings:
    database: Path | None  # with no etcd: SQLite at this path (None: memory only)
    etcd: EmbeddedEtcdSettings | None  # set exactly for ``store: etcd``
    heartbeat_unhealthy_after: float
    heartbeat_remove_after: float
    expiry_interval: float
    instance_check: CheckSettings
    nacos_grpc: NacosGrpcSettings


class EmbeddedSource:
    """``kind: embedded``; its store is what the registration APIs write to."""

    kind = "embedded"

    def __init__(self, name: str, cfg: EmbeddedSettings) -> None:
        self.name = name
        self.settings = cfg
        self.store: EmbeddedStore | EtcdStore
        self.leader: EtcdLeader | None = None
        self.nacos_grpc: NacosGrpcServer | None = None
        self._grpc_error: str | None = None
        if cfg.etcd is not None:  # set exactly when store is etcd (the config checks it)
            client = EtcdClient(cfg.etcd.access)
            self.store = EtcdStore(name, client, cfg.etcd.prefix, cfg.heartbeat_unhealthy_after,
                                   cfg.heartbeat_remove_after, cfg.etcd.connection_lease_ttl)
            self.leader = EtcdLeader(client, self.store.prefix + "leader", cfg.etcd.leader_ttl)
        else:
            try:
                db = RegistryDatabase(cfg.database) if cfg.database is not None else None
                self.store = EmbeddedStore(name, db)
            except (sqlite3.Error, OSError) as e:
                raise ConfigError(f"cannot open the embedded registry database {cfg.database}: {e}") from None

    @property
    def last_error(self) -> str | None:
        # SQLite input is validated per API call, never rejected whole; etcd can be unreachable
        store_error = self.store.last_error if isinstance(self.store, EtcdStore) else None
        return store_error or self._grpc_error

    @property
    def reads_network(self) -> bool:
        return isinstance(self.store, EtcdStore)

    async def read_once(self, registry: Registry) -> None:
        """The SQLite database was read when it was opened; etcd is listed once. Neither the
        checks nor the connection lease run: one read writes nothing."""
        self.store.bind(registry)
        if isinstance(self.store, EtcdStore):
            await self.store.read_once()

    @property
    def beats(self) -> HeartbeatPolicy:
        s = self.settings
        return HeartbeatPolicy(unhealthy_ms=int(s.heartbeat_unhealthy_after * 1000),
                               remove_ms=int(s.heartbeat_remove_after * 1000))

    def routes(self) -> list[web.RouteDef]:
        """The registration APIs: Nacos' naming Open API and xdscp's own /v1."""
        return NacosApi(self.store, self.beats).routes() + RegistryApi(self.store).routes()

    async def open_ports(self, admin: AdminBinding) -> None:
        """Nacos' gRPC face, by default at the admin port + 1000 (where Nacos SDKs look)."""
        grpc_cfg = self.settings.nacos_grpc
        if not grpc_cfg.enabled:
            return
        address = grpc_cfg.address or f"{admin.host}:{admin.port + GRPC_PORT_OFFSET}"
        server = NacosGrpcServer(self.store, grpc_cfg, self.beats, admin.credentials)
        tls = grpc_cfg.tls if grpc_cfg.tls is not None else admin.tls
        try:
            await server.start(address, tls)
        except BindError as e:
            if grpc_cfg.address is not None:
                raise  # asked for by name: not serving it is an error
            # the derived port is taken: serve the rest, and say so where operators look
            self._grpc_error = f"Nacos gRPC not served: {e} (set nacos_grpc.address)"
            log_event(log, logging.ERROR, "embedded.nacos_grpc_unavailable", source=self.name, address=address,
                      reason=str(e))
            return
        self.nacos_grpc = server
        log_event(log, logging.INFO, "embedded.nacos_grpc", source=self.name, address=address, port=server.port)

    async def close_ports(self, grace: float) -> None:
        if self.nacos_grpc is not None:
            await self.nacos_grpc.stop(grace)
            self.nacos_grpc = None

    def close(self) -> None:
        if isinstance(self.store, EmbeddedStore):
            self.store.close()

    async def run(self, registry: Registry) -> None:
        self.store.bind(registry)
        tasks: list[Coroutine[Any, Any, None]] = []
        if isinstance(self.store, EtcdStore):
            tasks.append(self.store.run())
        else:
            tasks.append(self._expire_forever(self.store))
        if self.settings.instance_check.enabled:
            leader = self.leader
            if leader is not None:
                tasks.append(leader.run())
            tasks.append(InstanceChecker(self.store, self.settings.instance_check,
                                         (lambda: leader.is_leader) if leader is not None else lambda: True).run())
        await asyncio.gather(*tasks)

    async def _expire_forever(self, store: EmbeddedStore) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(s.expiry_interval)
            store.expire(s.heartbeat_unhealthy_after, s.heartbeat_remove_after)
