"""Recent publishes, for people: when, what changed, which versions they brought, and since
when each instance has been as it is. The console's Pushes and Services pages read it.

It only observes: the publisher records each publish, and nothing reads it on the hot
path. Which streams took a push is worked out when asked, from what each open stream has
ACKed (the StreamTracker), so the protocol code tells it nothing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from xdscp.cache.snapshot import Snapshot, TypeSnapshot
from xdscp.model.locality import Locality
from xdscp.model.service import Service, ServiceKey
from xdscp.type_urls import canonical

KEEP = 50  # publishes remembered
SHOWN_CHANGES = 20  # changed services named per publish


@dataclass(frozen=True, slots=True)
class Push:
    seq: int
    at: float  # Unix time
    version: str  # the plain snapshot's
    changed: tuple[str, ...]  # the first SHOWN_CHANGES changed services, ``namespace/group/name``
    changed_count: int
    build_ms: float
    types: frozenset[str]  # the type URLs it brought new versions of


class PushLog:
    """The last ``KEEP`` publishes, and each instance's last change."""

    def __init__(self) -> None:
        self._pushes: deque[Push] = deque(maxlen=KEEP)
        self._seq = 0
        self._last: dict[str, set[str]] = {}  # type URL -> the versions served now (plain and views)
        self._seq_of: dict[tuple[str, str], int] = {}  # (type URL, version) -> the push that brought it
        self._held: dict[ServiceKey, Service] = {}
        self._since: dict[tuple[ServiceKey, str, int], float] = {}

    def record(self, snapshot: Snapshot, local: Mapping[Locality, TypeSnapshot], changed: Iterable[ServiceKey],
               services: Mapping[ServiceKey, Service], build_s: float) -> None:
        now = time.time()
        self._seq += 1
        served: dict[str, set[str]] = {url: {ts.version} for url, ts in snapshot.types.items()}
        for ts in local.values():
            served.setdefault(ts.type_url, set()).add(ts.version)
        brought = set()
        for url, versions in served.items():
            for v in versions - self._last.get(url, set()):
                self._seq_of[(url, v)] = self._seq
                brought.add(url)
        self._last = served
        keys = sorted(changed)
        self._pushes.append(Push(self._seq, now, snapshot.version, tuple(repr(k) for k in keys[:SHOWN_CHANGES]),
                                 len(keys), round(build_s * 1000, 3), frozenset(brought)))
        oldest = self._pushes[0].seq
        if len(self._seq_of) > 4 * KEEP * max(1, len(served)):
            self._seq_of = {k: s for k, s in self._seq_of.items() if s >= oldest}
        for key in keys:
            self._note_instances(key, services.get(key), now)

    def _note_instances(self, key: ServiceKey, svc: Service | None, now: float) -> None:
        old = self._held.pop(key, None)
        if old is None:  # first seen (every service, on the first publish): nothing to compare
            if svc is not None:
                self._held[key] = svc
                for inst in svc.instances:
                    self._since[(key, inst.host, inst.port)] = now
            return
        before = {(i.host, i.port): i for i in old.instances}
        now_at = {(i.host, i.port) for i in svc.instances} if svc is not None else set()
        for addr in before.keys() - now_at:
            self._since.pop((key, *addr), None)
        if svc is None:
            return
        self._held[key] = svc
        for inst in svc.instances:
            if before.get((inst.host, inst.port)) != inst or (key, inst.host, inst.port) not in self._since:
                self._since[(key, inst.host, inst.port)] = now

    def recent(self) -> list[Push]:
        """Newest first."""
        return list(reversed(self._pushes))

    def instance_since(self, key: ServiceKey, host: str, port: int) -> float | None:
        """Unix time the instance was last published changed (or first seen)."""
        return self._since.get((key, host, port))

    def push_of(self, type_url: str, version: str) -> int | None:
        """The push that brought this version of the type, while it is remembered."""
        return self._seq_of.get((type_url, version))

    def took(self, push: Push, acked: Iterable[Mapping[str, str]]) -> int:
        """How many streams have taken ``push``: for a type it brought, they ACKed its version
        or a later one. ``acked``: per open stream, type URL -> version ACKed."""
        count = 0
        for versions in acked:
            for url, version in versions.items():
                url = canonical(url)
                if url in push.types and self._seq_of.get((url, version), -1) >= push.seq:
                    count += 1
                    break
        return count
