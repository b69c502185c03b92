"""The ClusterLoadAssignments of each open locality.

A service with locality failover gets one assignment per locality, prioritised by
distance from it (see endpoints.py); every other service's assignment is the plain one,
the same object. A locality is opened when its first node connects and closed when its
last leaves (cache.SnapshotCache decides); in between, each registry change rebuilds
only the changed services' assignments, once per open locality.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from xdscp.cache.resource import Resource
from xdscp.cache.snapshot import TypeSnapshot
from xdscp.model.locality import Locality
from xdscp.model.service import Service
from xdscp.translation.endpoints import build_load_assignment
from xdscp.type_urls import ENDPOINT


def localized_assignment(name: str, svc: Service, locality: Locality) -> Resource:
    return Resource.of(ENDPOINT, name, build_load_assignment(name, svc, locality))


class LocalityEndpoints:
    """Per open locality, the ENDPOINT type it is served."""

    def __init__(self) -> None:
        self._open: dict[Locality, TypeSnapshot] = {}

    def open(self, locality: Locality, plain: TypeSnapshot, failover: Mapping[str, Service]) -> TypeSnapshot:
        """``plain``: every service's plain assignment; ``failover``: the services (by
        cluster name) whose assignments depend on the locality."""
        ts = plain.evolve({name: localized_assignment(name, svc, locality) for name, svc in failover.items()}, ())
        self._open[locality] = ts
        return ts

    def close(self, locality: Locality) -> None:
        self._open.pop(locality, None)

    def update(self, plain: Mapping[str, Resource], localized: Mapping[str, Service],
               removed: Iterable[str]) -> dict[Locality, TypeSnapshot]:
        """Apply one change to every open locality: ``plain`` assignments taken as they are,
        ``localized`` services rebuilt for each locality, ``removed`` names dropped."""
        removed = list(removed)
        for loc, ts in self._open.items():
            upserts = dict(plain)
            for name, svc in localized.items():
                upserts[name] = localized_assignment(name, svc, loc)
            self._open[loc] = ts.evolve(upserts, removed)
        return dict(self._open)

    def current(self) -> dict[Locality, TypeSnapshot]:
        return dict(self._open)

    def __len__(self) -> int:
        return len(self._open)
