"""Active health checks of persistent instances: TCP connect, or HTTP GET with expected statuses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from xdscp.logfmt import log_event
from xdscp.sources.embedded.contract import CheckTarget, RegistryStore, StoreUnavailable

log = logging.getLogger(__name__)

# Probes run concurrently, but not all at once against thousands of instances.
_MAX_CONCURRENT_PROBES = 256


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """Active checks of persistent instances."""

    enabled: bool
    type: str  # "tcp" or "http"
    path: str
    expected_statuses: frozenset[int]
    interval: float
    timeout: float
    healthy_threshold: int
    unhealthy_threshold: int


async def probe_tcp(host: str, port: int, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def probe_http(session: aiohttp.ClientSession, host: str, port: int, settings: CheckSettings) -> bool:
    url = f"http://{host}:{port}{settings.path}" if ":" not in host else f"http://[{host}]:{port}{settings.path}"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=settings.timeout),
                               allow_redirects=False) as resp:
            return resp.status in settings.expected_statuses
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


class InstanceChecker:
    """Probes every persistent instance each interval and reports results to the store.

    ``active`` says whether this process probes now: with replicas, only the leader does.
    """

    def __init__(self, store: RegistryStore, settings: CheckSettings,
                 active: Callable[[], bool] = lambda: True) -> None:
        self.store = store
        self.settings = settings
        self.active = active
        self._limit = asyncio.Semaphore(_MAX_CONCURRENT_PROBES)

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(force_close=True, limit=_MAX_CONCURRENT_PROBES)
        async with aiohttp.ClientSession(connector=connector) as session:
            while True:
                await self.check_all(session)
                await asyncio.sleep(self.settings.interval)

    async def check_all(self, session: aiohttp.ClientSession) -> None:
        if not self.active():
            return
        targets = self.store.check_targets()
        results = await asyncio.gather(*(self._probe(session, t) for t in targets))
        s = self.settings
        for target, ok in zip(targets, results, strict=True):
            if not self.active():
                return  # leadership lost while probing: the new leader counts from scratch
            try:
                await self.store.record_check(target, ok, s.healthy_threshold, s.unhealthy_threshold)
            except StoreUnavailable as e:  # the store's own health reports the outage
                log_event(log, logging.WARNING, "check.not_recorded", service=repr(target.key),
                          instance=f"{target.host}:{target.port}", reason=str(e))
                return

    async def _probe(self, session: aiohttp.ClientSession, t: CheckTarget) -> bool:
        async with self._limit:
            if self.settings.type == "tcp":
                return await probe_tcp(t.host, t.port, self.settings.timeout)
            return await probe_http(session, t.host, t.port, self.settings)
