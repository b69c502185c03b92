"""The snapshot cache: the current snapshot per node group, and who to wake on change."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from xdscp.cache.snapshot import Snapshot


class SnapshotCache:
    """Holds one snapshot for all groups (``set_all``) and optional per-group overrides.

    Streams register an asyncio.Event per group; publishing sets those events and
    nothing else, so fan-out cost at publish time is one ``Event.set`` per stream.
    """

    def __init__(self) -> None:
        self._default: Snapshot | None = None
        self._by_group: dict[str, Snapshot] = {}
        self._watchers: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def get(self, group: str) -> Snapshot | None:
        """The group's snapshot, or None while nothing has been published (streams wait)."""
        return self._by_group.get(group, self._default)

    def set_all(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` to every group that has no override of its own."""
        self._default = snapshot
        for group, events in self._watchers.items():
            if group not in self._by_group:
                for ev in events:
                    ev.set()

    def set_group(self, group: str, snapshot: Snapshot) -> None:
        self._by_group[group] = snapshot
        for ev in self._watchers.get(group, ()):
            ev.set()

    def groups(self) -> list[str]:
        return sorted(set(self._watchers) | set(self._by_group))

    def watch(self, group: str, event: asyncio.Event) -> None:
        self._watchers[group].add(event)
        if self.get(group) is not None:
            event.set()

    def unwatch(self, group: str, event: asyncio.Event) -> None:
        events = self._watchers.get(group)
        if events is not None:
            events.discard(event)
            if not events:
                del self._watchers[group]
