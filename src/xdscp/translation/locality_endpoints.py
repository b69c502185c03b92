"""The ClusterLoadAssignments of each open locality.

A service with locality failover gets one assignment per locality, prioritised by
distance from it (see endpoints.py); every other service's assignment is the plain one,
the same object. A locality is opened when its first node connects and closed when its
last leaves (cache.SnapshotCache decides); in between, each registry change rebuilds
only the changed services' assignments, once per open locality.

Opening a locality builds an assignment for every service with failover: about 150 us
each, so 1.5 s at 10,000. Past ``SLICE`` services that is done in slices between which
the event loop serves everything else; the locality's nodes wait for it (the cache
holds None for it meanwhile), and changes that land during the build are folded in at
its end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from xdscp.cache.cache import SnapshotCache
from xdscp.cache.resource import Resource
from xdscp.cache.snapshot import TypeSnapshot
from xdscp.logfmt import log_event
from xdscp.model.locality import Locality
from xdscp.model.service import Service
from xdscp.translation.endpoints import build_load_assignment
from xdscp.type_urls import ENDPOINT

log = logging.getLogger(__name__)

# Assignments built per turn of the event loop while a locality opens (about 40 ms).
SLICE = 250

# The translator's current state: every service's plain assignment, and the services
# (by cluster name) whose assignments depend on the locality.
Current = Callable[[], tuple[TypeSnapshot, Mapping[str, Service]]]


def localized_assignment(name: str, svc: Service, locality: Locality) -> Resource:
    """The bytes only: keeping each locality's messages too would cost about 5 KiB more per
    assignment (upb's arenas), for nothing the server reads."""
    cla = build_load_assignment(name, svc, locality)
    return Resource.from_payload(ENDPOINT, name, cla.SerializeToString(deterministic=True))


class LocalityEndpoints:
    """Per open locality, the ENDPOINT type it is served: the owner's cache.LocalityViews."""

    def __init__(self, current: Current) -> None:
        self._current = current
        self._open: dict[Locality, TypeSnapshot] = {}
        self._building: dict[Locality, asyncio.Task[None]] = {}
        self._cache: SnapshotCache | None = None  # where a locality built in the background goes

    def bind(self, cache: SnapshotCache) -> None:
        self._cache = cache

    def open(self, locality: Locality) -> TypeSnapshot | None:
        """The locality's assignments; None while they are built in the background."""
        plain, failover = self._current()
        if len(failover) > SLICE and self._cache is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._building[locality] = loop.create_task(self._build(locality))
                return None
        ts = plain.evolve({name: localized_assignment(name, svc, locality) for name, svc in failover.items()}, ())
        self._open[locality] = ts
        return ts

    async def _build(self, locality: Locality) -> None:
        started = time.perf_counter()
        built: dict[str, tuple[Service, Resource]] = {}
        names = list(self._current()[1])
        for i in range(0, len(names), SLICE):
            await asyncio.sleep(0)
            failover = self._current()[1]
            for name in names[i:i + SLICE]:
                svc = failover.get(name)
                if svc is not None:
                    built[name] = (svc, localized_assignment(name, svc, locality))
        # Changes made meanwhile: services added or changed are built now, removed ones left out.
        plain, failover = self._current()
        upserts = {}
        for name, svc in failover.items():
            hit = built.get(name)
            upserts[name] = hit[1] if hit is not None and hit[0] is svc else localized_assignment(name, svc, locality)
        ts = plain.evolve(upserts, ())
        del self._building[locality]
        self._open[locality] = ts
        assert self._cache is not None
        self._cache.set_local(locality, ts)
        log_event(log, logging.INFO, "locality.built", locality=str(locality), services=len(upserts),
                  build_ms=round((time.perf_counter() - started) * 1000, 1), version=ts.version)

    def close(self, locality: Locality) -> None:
        self._open.pop(locality, None)
        task = self._building.pop(locality, None)
        if task is not None:
            task.cancel()

    def update(self, plain: Mapping[str, Resource], localized: Mapping[str, Service],
               removed: Iterable[str]) -> None:
        """Apply one change to every open locality: ``plain`` assignments taken as they are,
        ``localized`` services rebuilt for each locality, ``removed`` names dropped.
        Localities still being built pick the change up when they finish."""
        removed = list(removed)
        for loc, ts in self._open.items():
            upserts = dict(plain)
            for name, svc in localized.items():
                upserts[name] = localized_assignment(name, svc, loc)
            self._open[loc] = ts.evolve(upserts, removed)

    def current(self) -> dict[Locality, TypeSnapshot]:
        return dict(self._open)

    def __len__(self) -> int:
        return len(self._open)
