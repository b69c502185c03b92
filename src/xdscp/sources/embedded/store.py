"""The embedded registry's state: services, instances, heartbeats and check results.

Every mutation is written to the database first (persistent data only), then applied
in memory, then published to the Registry as a one-service change: the path from an
API call or a health transition to Envoy has no timer in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.model.service import Instance, Service, ServiceKey
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.sources.embedded.contract import CheckTarget
from xdscp.sources.embedded.database import RegistryDatabase
from xdscp.sources.embedded.ref_times import LocalRefTimes, WallMs, wall_ms
from xdscp.sources.embedded.store_base import StoreBase

log = logging.getLogger(__name__)

Address = tuple[str, int]


@dataclass(slots=True)
class _Entry:
    # Validated settings, with the instances as last published: the one Service object a
    # service costs (the registry and translation hold this same one).
    spec: Service
    instances: dict[Address, Instance] = field(default_factory=dict)
    last_beat: dict[Address, float] = field(default_factory=dict)  # ephemeral instances only
    # unhealthy by heartbeat silence; a beat heals (a dict: an empty one is 64 bytes, a set 216)
    silenced: dict[Address, None] = field(default_factory=dict)
    held: dict[Address, str] = field(default_factory=dict)  # ephemeral instances a connection holds: owner


class EmbeddedStore(StoreBase):
    """All embedded services; the only writer of their state."""

    store_kind = "sqlite"

    def __init__(self, source_name: str, database: RegistryDatabase | None,
                 clock: Callable[[], float] = time.monotonic, now_ms: WallMs = wall_ms) -> None:
        super().__init__(source_name)
        self._db = database
        self._clock = clock
        self._ref_times = LocalRefTimes(now_ms)
        self._entries: dict[ServiceKey, _Entry] = {}
        # Services that have had a heartbeat-kept instance since the last expiry pass: the
        # pass looks at these, not at every service (100,000 persistent ones cost it
        # 7 ms every half second).
        self._beating: set[ServiceKey] = set()
        self._registry: Registry | None = None
        if database is not None:
            self._load(database)

    def _load(self, db: RegistryDatabase) -> None:
        services, instances = db.load()
        for spec in services:
            self._entries[spec.key] = _Entry(spec)
        for key, inst in instances:
            entry = self._entries.get(key)
            if entry is None:  # an instance whose service row was lost: recreate defaults
                entry = self._entries[key] = _Entry(Service(name=key.name, namespace=key.namespace, group=key.group))
            entry.instances[(inst.host, inst.port)] = inst
        log_event(log, logging.INFO, "embedded.loaded", source=self.source_name, services=len(services),
                  persistent_instances=len(instances), database=str(db.path))

    def bind(self, registry: Registry) -> None:
        """Start publishing to ``registry``, beginning with everything known now."""
        self._registry = registry
        now = self._clock()
        for key, entry in self._entries.items():
            for addr, inst in entry.instances.items():
                if inst.ephemeral:
                    self._beat(key, entry, addr, entry.last_beat.get(addr, now))
        registry.apply(self.source_name, FullSnapshot({k: self._service(k) for k in self._entries}))
        self._tell(None)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- reads ----------------------------------------------------------------------
    def service(self, key: ServiceKey) -> Service | None:
        return self._service(key) if key in self._entries else None

    def _service_keys(self) -> Iterable[ServiceKey]:
        return self._entries.keys()

    def _stored(self, key: ServiceKey, host: str, port: int) -> Instance | None:
        entry = self._entries.get(key)
        return entry.instances.get((host, port)) if entry is not None else None

    def check_targets(self) -> list[CheckTarget]:
        return [CheckTarget(key, host, port) for key, e in self._entries.items()
                for (host, port), inst in e.instances.items() if not inst.ephemeral]

    def ref_time(self, key: ServiceKey) -> int:
        return self._ref_times.stamp(key, key in self._entries)

    # -- writes ---------------------------------------------------------------------
    async def upsert_service(self, spec: Service) -> Service:
        """Create a service or replace its settings (its instances stay)."""
        spec = spec.model_copy(update={"instances": ()})
        if self._db is not None:
            self._db.save_service(spec)
        entry = self._entries.get(spec.key)
        if entry is None:
            self._entries[spec.key] = _Entry(spec)
        else:
            entry.spec = spec
        self._publish(spec.key)
        return self._service(spec.key)

    async def register(self, key: ServiceKey, inst: Instance) -> None:
        """Add or replace an instance; a new service gets default settings."""
        self._put(key, inst, None)

    async def hold(self, owner: str, key: ServiceKey, inst: Instance) -> None:
        self._put(key, inst.model_copy(update={"ephemeral": True}), owner)

    async def release(self, owner: str, key: ServiceKey, host: str, port: int) -> bool:
        entry = self._entries.get(key)
        if entry is None or entry.held.get((host, port)) != owner:
            return False
        return await self.deregister(key, host, port)

    async def hold_many(self, owner: str, key: ServiceKey, hold: list[Instance],
                        release: list[Address]) -> None:
        entry = self._entry_for(key)
        for host, port in release:
            if entry.held.get((host, port)) == owner and (host, port) in entry.instances:
                self._forget(key, entry, (host, port))
                log_event(log, logging.INFO, "instance.deregistered", service=repr(key), instance=f"{host}:{port}",
                          released_by=owner, left=len(entry.instances))
        for inst in hold:
            self._put(key, inst.model_copy(update={"ephemeral": True}), owner, publish=False)
        self._publish(key)

    def _put(self, key: ServiceKey, inst: Instance, owner: str | None, publish: bool = True) -> None:
        entry = self._entry_for(key)
        addr = (inst.host, inst.port)
        old = entry.instances.get(addr)
        if self._db is not None:
            if not inst.ephemeral:
                self._db.save_instance(key, inst)
            elif old is not None and not old.ephemeral:
                self._db.delete_instance(key, inst.host, inst.port)
        entry.instances[addr] = inst
        entry.silenced.pop(addr, None)
        self._forget_checks(key, addr)
        if owner is not None:
            entry.held[addr] = owner
            entry.last_beat.pop(addr, None)  # its connection keeps it, not heartbeats
        else:
            entry.held.pop(addr, None)
            if inst.ephemeral:
                self._beat(key, entry, addr, self._clock())
            else:
                entry.last_beat.pop(addr, None)
        log_event(log, logging.INFO, "instance.registered", service=repr(key), instance=f"{inst.host}:{inst.port}",
                  ephemeral=inst.ephemeral, healthy=inst.healthy, enabled=inst.enabled,
                  **({"held_by": owner} if owner is not None else {}))
        if publish:
            self._publish(key)

    async def deregister(self, key: ServiceKey, host: str, port: int) -> bool:
        """Remove an instance at once; False if it was not there."""
        entry = self._entries.get(key)
        if entry is None or (host, port) not in entry.instances:
            return False
        inst = entry.instances[(host, port)]
        if self._db is not None and not inst.ephemeral:
            self._db.delete_instance(key, host, port)
        self._forget(key, entry, (host, port))
        log_event(log, logging.INFO, "instance.deregistered", service=repr(key), instance=f"{host}:{port}",
                  left=len(entry.instances))
        self._publish(key)
        return True

    async def _rewrite(self, key: ServiceKey, inst: Instance) -> None:
        entry = self._entries[key]
        self._put(key, inst, entry.held.get((inst.host, inst.port)))  # a held instance stays held

    async def beat(self, key: ServiceKey, host: str, port: int, template: Instance | None = None) -> bool:
        """A heartbeat; an unknown instance is registered from ``template`` (as Nacos does)."""
        entry = self._entries.get(key)
        addr = (host, port)
        if entry is None or addr not in entry.instances:
            if template is None:
                return False
            await self.register(key, template.model_copy(update={"ephemeral": True}))
            return True
        if addr in entry.held:
            return True  # its connection keeps it alive
        self._beat(key, entry, addr, self._clock())
        if addr in entry.silenced:
            del entry.silenced[addr]
            entry.instances[addr] = entry.instances[addr].model_copy(update={"healthy": True})
            log_event(log, logging.INFO, "instance.beat_resumed", service=repr(key), instance=f"{host}:{port}")
            self._publish(key)
        return True

    def expire(self, unhealthy_after: float, remove_after: float) -> None:
        """Mark silent ephemeral instances unhealthy, then remove them."""
        now = self._clock()
        for key in list(self._beating):
            entry = self._entries[key]
            if not entry.last_beat:  # only ephemeral instances have heartbeats, and only they expire
                self._beating.discard(key)
                continue
            changed = False
            for addr in list(entry.last_beat):
                inst = entry.instances[addr]
                silence = now - entry.last_beat[addr]
                if silence >= remove_after:
                    self._forget(key, entry, addr)
                    log_event(log, logging.WARNING, "instance.expired", service=repr(key),
                              instance=f"{addr[0]}:{addr[1]}", silent_s=round(silence, 3))
                    changed = True
                elif silence >= unhealthy_after and addr not in entry.silenced and inst.healthy:
                    entry.silenced[addr] = None
                    entry.instances[addr] = inst.model_copy(update={"healthy": False})
                    log_event(log, logging.WARNING, "instance.silent", service=repr(key),
                              instance=f"{addr[0]}:{addr[1]}", silent_s=round(silence, 3))
                    changed = True
            if changed:
                self._publish(key)

    async def _write_health(self, key: ServiceKey, inst: Instance) -> None:
        if self._db is not None:
            self._db.save_instance(key, inst)  # a restart must come back with the same health
        self._entries[key].instances[(inst.host, inst.port)] = inst
        self._publish(key)

    # -- internals ------------------------------------------------------------------
    def _entry_for(self, key: ServiceKey) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            spec = Service(name=key.name, namespace=key.namespace, group=key.group)
            if self._db is not None:
                self._db.save_service(spec)
            entry = self._entries[key] = _Entry(spec)
        return entry

    def _beat(self, key: ServiceKey, entry: _Entry, addr: Address, at: float) -> None:
        """An ephemeral instance's last heartbeat; its service is one the expiry pass visits."""
        entry.last_beat[addr] = at
        self._beating.add(key)

    def _forget(self, key: ServiceKey, entry: _Entry, addr: Address) -> None:
        del entry.instances[addr]
        entry.last_beat.pop(addr, None)
        entry.silenced.pop(addr, None)
        entry.held.pop(addr, None)
        self._forget_checks(key, addr)

    def _service(self, key: ServiceKey) -> Service:
        entry = self._entries[key]
        instances = tuple(entry.instances[a] for a in sorted(entry.instances))
        if entry.spec.instances != instances:
            entry.spec = entry.spec.model_copy(update={"instances": instances})
        return entry.spec

    def _publish(self, key: ServiceKey) -> None:
        self._ref_times.changed(key)
        if self._registry is not None:
            self._registry.apply(self.source_name, ServiceChange(upserted=(self._service(key),)))
        self._tell(frozenset((key,)))
