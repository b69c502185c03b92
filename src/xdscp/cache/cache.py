"""The snapshot cache: what each node is served, and who to wake on change.

Every node is served one snapshot, except that a node in a locality (``node.locality``)
is served that locality's ClusterLoadAssignments: the ones of services with locality
failover are prioritised by distance from it. A locality's view exists while a node of it
is connected (or a REST poller asked within ``REST_LEASE`` seconds); its other types are
the plain snapshot's own objects, so memory grows with localities times the services
that fail over, not with nodes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from xdscp.cache.snapshot import Snapshot, TypeSnapshot
from xdscp.logfmt import log_event
from xdscp.metrics import LOCALITIES
from xdscp.model.locality import Locality
from xdscp.type_urls import ENDPOINT

log = logging.getLogger(__name__)

# What a node is served by: its locality, or None for the plain snapshot.
View = Locality | None
# Seconds a REST poller's locality view is kept after its last poll.
REST_LEASE = 60.0


class LocalityViews(Protocol):
    """Makes a locality's ClusterLoadAssignments: the owner translates them, a worker
    follows them from the owner."""

    def bind(self, cache: SnapshotCache) -> None:
        """Where assignments that were not ready at ``open`` go (``set_local``)."""

    def open(self, locality: Locality) -> TypeSnapshot | None:
        """The locality's assignments, or None until they arrive (its nodes wait)."""

    def close(self, locality: Locality) -> None: ...


@dataclass(frozen=True, slots=True)
class Localities:
    """Locality views: who makes them, and how many may exist at once (config's
    ``xds.limits.max_localities``); nodes of further localities get the plain snapshot."""

    views: LocalityViews
    limit: int


class SnapshotCache:
    """The plain snapshot, the open localities' assignments, and the streams to wake.

    Streams register an asyncio.Event per view; publishing sets those events and nothing
    else, so fan-out cost at publish time is one ``Event.set`` per stream.
    """

    def __init__(self, localities: Localities | None = None) -> None:
        """Without ``localities`` every node is served the plain snapshot."""
        self._localities = localities
        if localities is not None:
            localities.views.bind(self)
        self._default: Snapshot | None = None
        self._local: dict[Locality, TypeSnapshot | None] = {}
        self._composed: dict[Locality, Snapshot] = {}
        self._leases: dict[Locality, float] = {}
        self._watchers: defaultdict[View, set[asyncio.Event]] = defaultdict(set)
        self._over_limit: set[Locality] = set()  # logged once each

    def get(self, view: View = None) -> Snapshot | None:
        """The view's snapshot, or None while nothing has been published (streams wait)."""
        base = self._default
        if view is None or base is None:
            return base
        if view not in self._local:
            return base  # not opened: localities off, or over the limit
        endpoints = self._local[view]
        if endpoints is None:
            return None  # a worker waiting for the owner's answer
        if endpoints is base.types.get(ENDPOINT) or ENDPOINT not in base.types:
            return base
        snap = self._composed.get(view)
        if snap is None:
            snap = self._composed[view] = Snapshot(
                MappingProxyType({**base.types, ENDPOINT: endpoints}), changed_at=base.changed_at)
        return snap

    def set_all(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` as the plain snapshot; open localities keep their assignments."""
        self.publish(snapshot, {})

    def publish(self, snapshot: Snapshot, local: dict[Locality, TypeSnapshot]) -> None:
        """The plain snapshot and the assignments of the open localities given, at once."""
        self._default = snapshot
        for loc, endpoints in local.items():
            if loc in self._local:
                self._local[loc] = endpoints
        self._composed.clear()
        self._sweep_leases()
        for view, events in self._watchers.items():
            if view is not None and view in self._local and self._local[view] is None:
                continue  # still being made: its nodes are woken when it is
            for ev in events:
                ev.set()

    def set_local(self, locality: Locality, endpoints: TypeSnapshot) -> None:
        """An open locality's assignments arrived: built in the background (the owner's), or
        answered by the owner (a worker's)."""
        if locality not in self._local:
            return
        self._local[locality] = endpoints
        self._composed.pop(locality, None)
        for ev in self._watchers.get(locality, ()):
            ev.set()

    def localities(self) -> list[Locality]:
        return sorted(self._local)

    def watch(self, view: View, event: asyncio.Event) -> None:
        if view is not None:
            self._open(view)
        self._watchers[view].add(event)
        if self.get(view) is not None:
            event.set()

    def unwatch(self, view: View, event: asyncio.Event) -> None:
        events = self._watchers.get(view)
        if events is None:
            return
        events.discard(event)
        if not events:
            del self._watchers[view]
            if view is not None:
                self._close_if_unused(view)

    def lease(self, view: View, now: float | None = None) -> Snapshot | None:
        """For one-shot answers (REST polls): the view's snapshot, kept built for
        ``REST_LEASE`` seconds more."""
        if view is not None:
            self._open(view)
            if view in self._local:
                self._leases[view] = (time.monotonic() if now is None else now) + REST_LEASE
        return self.get(view)

    def _open(self, loc: Locality) -> None:
        if self._localities is None or loc in self._local:
            return
        if len(self._local) >= self._localities.limit:
            if loc not in self._over_limit and len(self._over_limit) < self._localities.limit:
                self._over_limit.add(loc)
                log_event(log, logging.WARNING, "locality.over_limit", locality=str(loc),
                          limit=self._localities.limit, hint="its nodes get endpoints prioritised by source only")
            return
        self._local[loc] = self._localities.views.open(loc)
        LOCALITIES.set(len(self._local))
        log_event(log, logging.INFO, "locality.opened", locality=str(loc), localities=len(self._local))

    def _close_if_unused(self, loc: Locality, now: float | None = None) -> None:
        if loc not in self._local or loc in self._watchers:
            return
        until = self._leases.get(loc)
        if until is not None and until > (time.monotonic() if now is None else now):
            return
        self._leases.pop(loc, None)
        del self._local[loc]
        self._composed.pop(loc, None)
        self._over_limit.clear()  # room again: a later over-limit locality is worth a new warning
        assert self._localities is not None
        self._localities.views.close(loc)
        LOCALITIES.set(len(self._local))
        log_event(log, logging.INFO, "locality.closed", locality=str(loc), localities=len(self._local))

    def _sweep_leases(self) -> None:
        if not self._leases:
            return
        now = time.monotonic()
        for loc in [loc for loc, until in self._leases.items() if until <= now]:
            self._leases.pop(loc, None)
            self._close_if_unused(loc, now)
