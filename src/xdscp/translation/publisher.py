"""The loop from registry changes to published snapshots."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import replace

from xdscp.cache.cache import SnapshotCache
from xdscp.clock import MONOTONIC, Clock
from xdscp.logfmt import log_event
from xdscp.metrics import DEBOUNCE_MERGED, RESOURCES, SNAPSHOT_BUILD, SNAPSHOTS_PUBLISHED, type_label
from xdscp.model.registry import Registry
from xdscp.model.service import ServiceKey
from xdscp.translation.first_publish import FirstPublish
from xdscp.translation.push_log import PushLog
from xdscp.translation.translator import Translator

log = logging.getLogger(__name__)


class Publisher:
    """Waits for registry changes, translates them, publishes one snapshot to every group.

    After the first change of a burst it waits ``debounce`` seconds and publishes
    everything that arrived meanwhile as one snapshot: a rolling deploy that registers
    a hundred instances in a few milliseconds costs one push to every stream, not a
    hundred. By default the wait is fixed, not extended by later changes; with a longer
    ``debounce_max`` each change extends it by ``debounce``, up to ``debounce_max``
    after the first, so steady churn can never postpone a push indefinitely.
    The first snapshot waits for the sources as ``FirstPublish`` says: every required
    source until it loads, an optional one for its grace; a control plane that restarts
    with a required registry unreachable must not serve a world without its services.
    """

    def __init__(self, registry: Registry, translator: Translator, cache: SnapshotCache,
                 debounce: float, debounce_max: float | None, optional: Mapping[str, float],
                 clock: Clock = MONOTONIC) -> None:
        self.registry = registry
        self.clock = clock
        self.first = FirstPublish(registry, optional, clock.now())
        self.translator = translator
        self.cache = cache
        self.debounce = debounce
        self.debounce_max = max(debounce, debounce_max if debounce_max is not None else debounce)
        self.published = 0
        self.log = PushLog()  # recent publishes, for the console
        self.last_version: str | None = None

    async def run(self) -> None:
        pending: set[ServiceKey] = set()
        first_change = 0.0
        while True:
            if self.published:
                pending |= await self.registry.wait_changes()
            else:
                pending |= await self._first_changes()
                if self.first.blocking(self.clock.now()):
                    continue
                self._log_first_without()
            first_change = first_change or self.clock.now()
            if not pending and self.published:
                first_change = 0.0
                continue
            if self.debounce and self.published:
                await self._gather(pending, first_change)
            self.publish(pending, first_change)
            pending = set()
            first_change = 0.0

    async def _first_changes(self) -> set[ServiceKey]:
        """Before the first publish: the next changes, or none when a source's grace runs out."""
        wait = self.first.seconds_left(self.clock.now())
        if wait is None:
            return await self.registry.wait_changes()
        changes = asyncio.ensure_future(self.registry.wait_changes())
        timer = asyncio.ensure_future(self.clock.sleep(wait))
        try:
            await asyncio.wait((changes, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            changes.cancel()
        return changes.result() if changes.done() and not changes.cancelled() else set()

    def _log_first_without(self) -> None:
        missing = self.first.missing()
        if missing:
            log_event(log, logging.WARNING, "publish.without_sources", sources=missing,
                      hint="optional sources past their startup_grace; their services join when they load")

    async def _gather(self, pending: set[ServiceKey], first_change: float) -> None:
        """Wait out the debounce window, adding what arrives to ``pending``."""
        deadline = first_change + self.debounce_max
        wait = self.debounce
        while True:
            await self.clock.sleep(wait)
            arrived = self.registry.take_changes()
            DEBOUNCE_MERGED.inc(len(arrived - pending))
            pending |= arrived
            wait = min(self.debounce, deadline - self.clock.now())
            if not arrived or wait <= 0:
                return

    def publish(self, changed: set[ServiceKey], changed_at: float = 0.0) -> None:
        """Translate ``changed`` and publish; ``changed_at`` (monotonic) dates the change."""
        started = time.perf_counter()
        snapshot = self.translator.update(self.registry.services, changed)
        snapshot = replace(snapshot, changed_at=changed_at or self.clock.now())
        build = time.perf_counter() - started
        local = self.translator.localities.current()
        self.cache.publish(snapshot, local)
        self.published += 1
        self.last_version = snapshot.version
        SNAPSHOT_BUILD.observe(build)
        self.log.record(snapshot, local, changed, self.registry.services, build)
        SNAPSHOTS_PUBLISHED.inc()
        for type_url, ts in snapshot.types.items():
            RESOURCES.labels(type_label(type_url)).set(len(ts.resources))
        log_event(log, logging.INFO, "snapshot.published", version=snapshot.version,
                  changed=len(changed), services=len(self.registry.services), build_ms=round(build * 1000, 3))
