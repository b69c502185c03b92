"""The embedded source: its store, heartbeat expiry, and checks of persistent instances.

With ``store: sqlite`` (one process) the source expires silent ephemeral instances itself.
With ``store: etcd`` (replicas) etcd's leases expire them, and only the replica elected
leader through etcd runs the checks, so each instance is probed once per interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from xdscp.model.registry import Registry
from xdscp.sources.embedded.api.nacos import HeartbeatPolicy, NacosApi
from xdscp.sources.embedded.api.native import RegistryApi
from xdscp.sources.embedded.checks import CheckSettings, InstanceChecker
from xdscp.sources.embedded.database import RegistryDatabase
from xdscp.sources.embedded.etcd_store import EtcdStore
from xdscp.sources.embedded.leader import EtcdLeader
from xdscp.sources.embedded.store import EmbeddedStore
from xdscp.sources.etcd.client import EtcdClient


@dataclass(frozen=True, slots=True)
class EtcdStoreSettings:
    endpoints: list[str]
    prefix: str = "/xdscp/registry"
    timeout: float = 5.0
    username: str | None = None
    password: str | None = None
    leader_ttl: int = 5


@dataclass(frozen=True, slots=True)
class EmbeddedSettings:
    database: Path | None  # None: nothing survives a restart
    heartbeat_unhealthy_after: float = 15.0
    heartbeat_remove_after: float = 30.0
    expiry_interval: float = 0.5
    checks: CheckSettings | None = CheckSettings()  # None: persistent instances are not probed
    etcd: EtcdStoreSettings | None = None  # set: replicas share the state in etcd (database unused)


class EmbeddedSource:
    """``kind: embedded``; its store is what the registration APIs write to."""

    kind = "embedded"

    def __init__(self, name: str, settings: EmbeddedSettings) -> None:
        self.name = name
        self.settings = settings
        self.store: EmbeddedStore | EtcdStore
        self.leader: EtcdLeader | None = None
        if settings.etcd is not None:
            e = settings.etcd
            client = EtcdClient(e.endpoints, e.timeout, e.username, e.password)
            self.store = EtcdStore(name, client, e.prefix, settings.heartbeat_unhealthy_after,
                                   settings.heartbeat_remove_after)
            self.leader = EtcdLeader(client, self.store.prefix + "leader", e.leader_ttl)
        else:
            db = RegistryDatabase(settings.database) if settings.database is not None else None
            self.store = EmbeddedStore(name, db)

    @property
    def last_error(self) -> str | None:
        # SQLite input is validated per API call, never rejected whole; etcd can be unreachable
        return self.store.last_error if isinstance(self.store, EtcdStore) else None

    def check(self) -> list[str]:
        return []  # the database was opened (and its schema checked) in __init__

    def routes(self) -> list[web.RouteDef]:
        """The registration APIs: Nacos' naming Open API and xdscp's own /v1."""
        s = self.settings
        beats = HeartbeatPolicy(unhealthy_ms=int(s.heartbeat_unhealthy_after * 1000),
                                remove_ms=int(s.heartbeat_remove_after * 1000))
        return NacosApi(self.store, beats).routes() + RegistryApi(self.store).routes()

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
        if self.settings.checks is not None:
            leader = self.leader
            if leader is not None:
                tasks.append(leader.run())
            tasks.append(InstanceChecker(self.store, self.settings.checks,
                                         (lambda: leader.is_leader) if leader is not None else lambda: True).run())
        await asyncio.gather(*tasks)

    async def _expire_forever(self, store: EmbeddedStore) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(s.expiry_interval)
            store.expire(s.heartbeat_unhealthy_after, s.heartbeat_remove_after)
