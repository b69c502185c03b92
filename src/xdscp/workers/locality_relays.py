"""A worker's locality views: each open locality is followed from the owner by a relay
of its own that asks as a node of that locality, so the owner's translation (and its
versions) is what every process serves."""

from __future__ import annotations

import asyncio

from xdscp.cache.cache import SnapshotCache
from xdscp.cache.snapshot import TypeSnapshot
from xdscp.model.locality import Locality
from xdscp.type_urls import ENDPOINT
from xdscp.workers.relay import CacheRelay, into_locality


class RelayedLocalities:
    """cache.LocalityViews for a worker: ``open`` starts a locality's relay, ``close`` ends it."""

    def __init__(self, upstream: str, token: str | None = None) -> None:
        self.upstream = upstream
        self.token = token
        self.cache: SnapshotCache | None = None  # bound once the cache that uses these views exists
        self._relays: dict[Locality, asyncio.Task[None]] = {}

    def bind(self, cache: SnapshotCache) -> None:
        self.cache = cache

    def open(self, locality: Locality) -> TypeSnapshot | None:
        assert self.cache is not None, "bind the cache first"
        relay = CacheRelay(self.upstream, into_locality(self.cache, locality), (ENDPOINT,), self.token, locality)
        self._relays[locality] = asyncio.get_running_loop().create_task(relay.run())
        return None  # its nodes wait for the owner's answer

    def close(self, locality: Locality) -> None:
        task = self._relays.pop(locality, None)
        if task is not None:
            task.cancel()

    def stop(self) -> None:
        for task in self._relays.values():
            task.cancel()
        self._relays.clear()
