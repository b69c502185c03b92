"""``kind: zookeeper``: Dubbo providers registered in ZooKeeper, followed with watches.

Layout (Dubbo's interface-level registry): ``{root}/{interface}/providers/{provider URL}``,
one ephemeral znode per provider; ``root`` is ``/dubbo`` unless Dubbo's registry
``group`` moved it. How a provider URL becomes an instance: xdscp.sources.dubbo_providers.

ZooKeeper watches fire once; every read here sets a new one, so each change is read
right after it happens (no polling). The client is kazoo, which drops its watches when
the connection drops, so after every (re)connection the source lists the whole tree
again. While ZooKeeper cannot be reached the last good view stays; a provider is gone
only when ZooKeeper itself removed its znode (its session ended).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.interfaces import IAsyncResult
from kazoo.protocol.states import EventType, WatchedEvent
from kazoo.retry import KazooRetry

from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.model.service import Service, ServiceKey
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.sources.health import RemoteSource, SourceHealth
from xdscp.sources.salvage import salvage_services
from xdscp.sources.zookeeper.dubbo_providers import provider_records

log = logging.getLogger(__name__)

_ROOT = ""  # the dirty-set key of the root's children (interfaces are never empty)


@dataclass(frozen=True, slots=True)
class ZooKeeperSettings:
    hosts: tuple[str, ...]
    root: str
    namespace: str
    session_timeout: float
    timeout: float
    username: str | None
    password: str | None


class ZooKeeperSource(RemoteSource):
    """Watches ``{root}/*/providers`` and applies each interface as it changes."""

    kind = "zookeeper"

    def __init__(self, name: str, cfg: ZooKeeperSettings) -> None:
        self.name = name
        self.hosts = ",".join(cfg.hosts)
        self.root = "/" + cfg.root.strip("/")
        self.namespace = cfg.namespace
        self.session_timeout = cfg.session_timeout
        self.timeout = cfg.timeout
        self.auth = [("digest", f"{cfg.username}:{cfg.password or ''}")] if cfg.username is not None else []
        self.health = SourceHealth(name, log, 0.5)
        self.client: KazooClient | None = None
        self._providers: dict[str, list[str]] = {}  # interface -> provider znodes
        self._applied: dict[str, set[ServiceKey]] = {}  # interface -> services applied for it
        self._dirty: set[str] = set()
        self._relist = True
        self._connected = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the loop ----------------------------------------------------------------------
    async def run(self, registry: Registry) -> None:
        self._loop = asyncio.get_running_loop()
        # kazoo logs every failed connection attempt; the source's own events say it once.
        client_log = logging.getLogger(f"{__name__}.client")
        client_log.setLevel(logging.ERROR)
        self.client = client = KazooClient(
            hosts=self.hosts, timeout=self.session_timeout, auth_data=self.auth, logger=client_log,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=2.0))
        client.add_listener(self._on_state)
        client.start_async()
        try:
            while True:
                woken = await self._woken()
                if not self._connected:
                    if not woken:  # still connecting: say so, with backoff between reports
                        self.health.failed(f"cannot reach ZooKeeper at {self.hosts}")
                    continue
                try:
                    if self._relist:
                        await self.list_all(registry)
                    elif self._dirty:
                        await self.refresh(registry)
                except (KazooException, KazooTimeoutError, TimeoutError) as e:
                    self._relist = True  # a full listing is always a safe way back
                    self.health.failed(f"reading ZooKeeper at {self.hosts} failed: {type(e).__name__} {e}".rstrip())
                    await asyncio.sleep(self.health.retry_delay())
                    self._wake.set()
        finally:
            self._stopping = True
            await asyncio.shield(asyncio.to_thread(_close, client))

    async def _woken(self) -> bool:
        """Wait for a change or a (re)connection; False when still unconnected after the wait."""
        wait = None if self._connected else (self.timeout if not self.health.failures else
                                             self.health.retry_delay())
        try:
            await asyncio.wait_for(self._wake.wait(), wait)
        except TimeoutError:
            return self._connected
        self._wake.clear()
        return True

    # -- kazoo's threads -> the event loop ----------------------------------------------
    def _on_state(self, state: str) -> None:
        self._call_soon(self._state_changed, state)

    def _on_event(self, event: WatchedEvent) -> None:
        if event.type == EventType.NONE:
            return  # kazoo dropping watches on a disconnect; _on_state handles that
        path = event.path or ""
        rest = path[len(self.root):].strip("/")
        self._call_soon(self._mark, rest.split("/", 1)[0] if rest else _ROOT)

    def _call_soon(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and not self._stopping:
            try:
                self._loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:
                pass  # the loop closed while kazoo was still delivering

    def _state_changed(self, state: str) -> None:
        if self._stopping:
            return
        if state == KazooState.CONNECTED:
            self._connected = True
            self._relist = True  # kazoo dropped every watch with the old connection
        else:
            self._connected = False
            why = "the session expired" if state == KazooState.LOST else "the connection dropped"
            self.health.failed(f"lost ZooKeeper at {self.hosts}: {why}")
        self._wake.set()

    def _mark(self, key: str) -> None:
        self._dirty.add(key)
        self._wake.set()

    # -- reading -----------------------------------------------------------------------
    async def _await(self, result: IAsyncResult) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(r: IAsyncResult) -> None:
            if fut.done():
                return
            if r.successful():
                fut.set_result(r.value)
            else:
                fut.set_exception(r.exception)

        result.rawlink(lambda r: self._call_soon(settle, r))
        return await asyncio.wait_for(fut, self.timeout)

    async def _children(self, path: str) -> list[str]:
        """The children of ``path``, watched; a missing node is watched for its creation."""
        assert self.client is not None
        while True:
            try:
                return list(await self._await(self.client.get_children_async(path, watch=self._on_event)))
            except NoNodeError:
                pass
            if await self._await(self.client.exists_async(path, watch=self._on_event)) is None:
                return []

    def _providers_path(self, interface: str) -> str:
        return f"{self.root}/{interface}/providers"

    async def _read_providers(self, interfaces: Iterable[str]) -> dict[str, list[str]]:
        wanted = sorted(interfaces)
        found = await asyncio.gather(*(self._children(self._providers_path(i)) for i in wanted))
        return dict(zip(wanted, found, strict=True))

    async def list_all(self, registry: Registry) -> None:
        self._relist = False
        self._dirty.clear()  # events from here on come from the watches set below
        self._providers = await self._read_providers(await self._children(self.root))
        built = {i: self._build(i) for i in self._providers}
        self._applied = {i: {s.key for s in services} for i, services in built.items()}
        every = [s for services in built.values() for s in services]
        changed = registry.apply(self.name, FullSnapshot.of(every))
        self.health.ok()
        log_event(log, logging.INFO, "source.loaded", source=self.name, interfaces=len(built),
                  services=len(every), changed=len(changed))

    async def refresh(self, registry: Registry) -> None:
        dirty, self._dirty = self._dirty, set()
        touched: set[str] = set()
        if _ROOT in dirty:
            interfaces = set(await self._children(self.root))
            for gone in self._providers.keys() - interfaces:
                del self._providers[gone]
                touched.add(gone)
            dirty |= interfaces - self._providers.keys()
            dirty.discard(_ROOT)
            present = interfaces
        else:
            present = set(self._providers)
        reread = await self._read_providers(dirty & present)
        self._providers.update(reread)
        touched |= reread.keys()
        if not touched:
            return
        upserted: list[Service] = []
        removed: list[ServiceKey] = []
        for interface in sorted(touched):
            services = self._build(interface) if interface in self._providers else []
            keys = {s.key for s in services}
            removed += sorted(self._applied.pop(interface, set()) - keys)
            if keys:
                self._applied[interface] = keys
            upserted += services
        registry.apply(self.name, ServiceChange(upserted=tuple(upserted), removed=tuple(removed)))
        self.health.ok()
        log_event(log, logging.INFO, "source.changed", source=self.name, interfaces=sorted(touched))

    # -- znodes -> services ------------------------------------------------------------
    def _build(self, interface: str) -> list[Service]:
        records = provider_records(interface, self._providers.get(interface, ()), self.namespace)
        salvaged = salvage_services(records.services)
        problems = [f"{self.root}/{p}" for p in records.problems]
        problems += [f"{self._providers_path(interface)}: {p}" for p in salvaged.problems]
        for problem in problems:
            log_event(log, logging.WARNING, "source.entry_dropped", source=self.name, problem=problem)
        return salvaged.services


def _close(client: KazooClient) -> None:
    try:
        client.stop()
        client.close()
    except Exception as e:  # shutting down: nothing left to protect
        log_event(log, logging.DEBUG, "source.close_failed", error=repr(e))
