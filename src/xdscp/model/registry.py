"""The merged registry view over all sources, and what changed since it was last read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from xdscp.metrics import SOURCE_LAST_SYNC
from xdscp.model.service import Instance, Service, ServiceKey
from xdscp.model.updates import FullSnapshot, RegistryUpdate, ServiceChange


class Registry:
    """Merges the sources' views into one, keyed by ServiceKey.

    When two sources list the same service, the first source (in config order) gives
    its settings and the instances are the union, first source first. Unchanged
    services keep their object identity, so translation can skip them cheaply.
    """

    def __init__(self, source_names: Iterable[str], priorities: Mapping[str, int] | None = None) -> None:
        self._order = list(source_names)
        # A source's priority is added to each of its instances' (Envoy failover order).
        self._priority = {n: (priorities or {}).get(n, 0) for n in self._order}
        self._by_source: dict[str, dict[ServiceKey, Service]] = {n: {} for n in self._order}
        self._synced: set[str] = set()
        self._last_sync: dict[str, float] = {}  # source -> Unix time of its last applied update
        self._merged: dict[ServiceKey, Service] = {}
        self._dirty: set[ServiceKey] = set()
        self._changed = asyncio.Event()

    @property
    def services(self) -> Mapping[ServiceKey, Service]:
        return MappingProxyType(self._merged)

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources' names, in config order."""
        return tuple(self._order)

    @property
    def ready(self) -> bool:
        """True once every source has delivered a first full snapshot."""
        return self._synced.issuperset(self._order)

    def is_synced(self, source: str) -> bool:
        return source in self._synced

    def last_sync(self, source: str) -> float | None:
        """Unix time of the source's last update (a read that loaded or changed something)."""
        return self._last_sync.get(source)

    def source_services(self, source: str) -> Mapping[ServiceKey, Service]:
        """What one source contributes (before merging); KeyError for an unknown source."""
        return MappingProxyType(self._by_source[source])

    def apply(self, source: str, update: RegistryUpdate) -> set[ServiceKey]:
        """Apply one source's update; return the keys whose merged service changed."""
        if source not in self._by_source:
            raise KeyError(f"unknown source {source!r}")
        view = self._by_source[source]
        if isinstance(update, FullSnapshot):
            touched = set(view) | set(update.services)
            self._by_source[source] = view = dict(update.services)
            self._synced.add(source)
        elif isinstance(update, ServiceChange):
            touched = {s.key for s in update.upserted} | set(update.removed)
            for key in update.removed:
                view.pop(key, None)
            for svc in update.upserted:
                view[svc.key] = svc
        else:  # pragma: no cover - guarded by the type
            raise TypeError(f"not a registry update: {update!r}")
        changed = {k for k in touched if self._remerge(k)}
        now = self._last_sync[source] = time.time()
        SOURCE_LAST_SYNC.labels(source).set(now)
        if changed or isinstance(update, FullSnapshot):
            self._dirty |= changed
            self._changed.set()
        return changed

    def _remerge(self, key: ServiceKey) -> bool:
        parts = [_with_priority(v[key], self._priority[n]) for n in self._order if key in (v := self._by_source[n])]
        old = self._merged.get(key)
        if not parts:
            if old is None:
                return False
            del self._merged[key]
            return True
        new = parts[0] if len(parts) == 1 else _merge(parts)
        if old is new or old == new:
            return False
        self._merged[key] = new
        return True

    async def wait_changes(self) -> set[ServiceKey]:
        """Wait until something changed, then return (and forget) the changed keys."""
        await self._changed.wait()
        return self.take_changes()

    def take_changes(self) -> set[ServiceKey]:
        """The keys changed since the last call (possibly none), forgotten once returned."""
        self._changed.clear()
        dirty, self._dirty = self._dirty, set()
        return dirty


def _merge(parts: list[Service]) -> Service:
    seen: set[tuple[str, int]] = set()
    instances: list[Instance] = []
    for svc in parts:
        for inst in svc.instances:
            if (inst.host, inst.port) not in seen:
                seen.add((inst.host, inst.port))
                instances.append(inst)
    return parts[0].model_copy(update={"instances": tuple(instances)})


def _with_priority(svc: Service, priority: int) -> Service:
    """``svc`` with ``priority`` added to each instance's; itself when it is 0."""
    if not priority:
        return svc
    return svc.model_copy(update={"instances": tuple(
        i.model_copy(update={"priority": i.priority + priority}) for i in svc.instances)})
