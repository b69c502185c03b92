"""``kind: consul``: Consul's catalog and health, followed with blocking queries.

One blocking query on ``/v1/catalog/services`` follows which services exist; one per
service on ``/v1/health/service/<name>`` follows its instances and their checks. Each
query carries the last ``X-Consul-Index`` and returns as soon as something changed
(or after ``wait``), so a change reaches Envoy in milliseconds with no polling load.

An instance's health is the worst of its checks (node and service checks): passing
is HEALTHY, critical UNHEALTHY, and warning whichever ``warning_as`` says (default
healthy, as Consul's own DNS treats it). Weights come from ``Weights.Passing`` (or
``Weights.Warning`` while warning), ``Service.Meta`` becomes metadata, and the
address is ``Service.Address`` or else the node's. The service key is
(public, DEFAULT_GROUP, name): the Envoy cluster is the Consul service name.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from xdscp.background import cancel_and_wait
from xdscp.errors import XdscpError
from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.model.service import DEFAULT_GROUP, DEFAULT_NAMESPACE, Service, ServiceKey
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.sources.health import RemoteSource, SourceHealth
from xdscp.sources.salvage import salvage_services

log = logging.getLogger(__name__)


class ConsulError(XdscpError):
    """Consul could not be read; the last good view stays."""


@dataclass(frozen=True, slots=True)
class ConsulSettings:
    address: str
    datacenter: str | None
    token: str | None
    warning_as: str  # "healthy" or "unhealthy"
    wait: float
    timeout: float


class ConsulSource(RemoteSource):
    """Follows every service in one datacenter's catalog."""

    kind = "consul"

    def __init__(self, name: str, cfg: ConsulSettings) -> None:
        self.name = name
        self.address = cfg.address.rstrip("/")
        self.datacenter = cfg.datacenter
        self.token = cfg.token
        self.warning_healthy = cfg.warning_as == "healthy"
        self.wait = cfg.wait
        self.timeout = cfg.timeout
        self.health = SourceHealth(name, log, 0.5)
        self._records: dict[str, dict[str, Any]] = {}  # service -> its last record
        self._synced = False

    async def run(self, registry: Registry) -> None:
        async with aiohttp.ClientSession(headers={"X-Consul-Token": self.token} if self.token else {}) as session:
            watchers: dict[str, asyncio.Task[None]] = {}
            index = 0
            try:
                while True:
                    try:
                        names, index = await self._catalog(session, index)
                        if not self._synced:
                            await self._first_sync(session, registry, names)
                    except ConsulError as e:
                        self.health.failed(str(e), kept_last_good=self._synced)
                        index = 0
                        await asyncio.sleep(self.health.retry_delay())
                        continue
                    self.health.ok()
                    for gone in set(watchers) - names:
                        await cancel_and_wait([watchers.pop(gone)])
                        self._records.pop(gone, None)
                        registry.apply(self.name, ServiceChange(removed=(_key(gone),)))
                    for new in names - set(watchers):
                        watchers[new] = asyncio.create_task(self._follow_service(session, registry, new))
            finally:
                await cancel_and_wait(watchers.values())

    async def _first_sync(self, session: aiohttp.ClientSession, registry: Registry, names: set[str]) -> None:
        """Everything once, applied as one snapshot: nothing is served from half a catalog."""
        for name in sorted(names):
            entries, _ = await self._query(session, f"/v1/health/service/{name}", 0)
            self._records[name] = self._record(name, entries)
        registry.apply(self.name, FullSnapshot.of(self._salvaged(list(self._records.values()))))
        self._synced = True
        log_event(log, logging.INFO, "source.loaded", source=self.name, services=len(names))

    async def _follow_service(self, session: aiohttp.ClientSession, registry: Registry, name: str) -> None:
        index = 0
        while True:
            try:
                entries, new_index = await self._query(session, f"/v1/health/service/{name}", index)
            except ConsulError as e:
                # This service keeps its last instances; the catalog watch reports Consul's state.
                log_event(log, logging.WARNING, "source.service_unreadable", source=self.name, service=name,
                          reason=str(e))
                index = 0
                await asyncio.sleep(1.0)
                continue
            index = new_index
            record = self._record(name, entries)
            if record != self._records.get(name):
                self._records[name] = record
                services = self._salvaged([record])
                registry.apply(self.name, ServiceChange(upserted=tuple(services),
                                                        removed=() if services else (_key(name),)))
                log_event(log, logging.INFO, "source.changed", source=self.name, service=name,
                          instances=len(record["instances"]), index=index)

    # -- Consul's HTTP API ----------------------------------------------------------------
    async def _catalog(self, session: aiohttp.ClientSession, index: int) -> tuple[set[str], int]:
        data, new_index = await self._query(session, "/v1/catalog/services", index)
        if not isinstance(data, dict):
            raise ConsulError("/v1/catalog/services did not answer an object")
        return {str(n) for n in data if n != "consul"}, new_index

    async def _query(self, session: aiohttp.ClientSession, path: str, index: int) -> tuple[Any, int]:
        params = {"wait": f"{int(self.wait)}s"}
        if index:
            params["index"] = str(index)
        if self.datacenter:
            params["dc"] = self.datacenter
        timeout = aiohttp.ClientTimeout(total=self.wait + self.timeout + self.wait / 16)
        url = self.address + path
        try:
            async with session.get(url, params=params, timeout=timeout) as resp:
                if resp.status != 200:
                    raise ConsulError(f"{url} answered HTTP {resp.status}: {(await resp.text())[:200]}")
                data = await resp.json(content_type=None)
                new_index = int(resp.headers.get("X-Consul-Index", "0") or 0)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise ConsulError(f"cannot read {url}: {type(e).__name__} {e}".rstrip()) from None
        # Consul: an index that goes backwards (a restored snapshot) means start over.
        return data, new_index if new_index > 0 and new_index >= index else 0

    # -- records -----------------------------------------------------------------------
    def _record(self, name: str, entries: Any) -> dict[str, Any]:
        instances = []
        for entry in entries if isinstance(entries, list) else []:
            svc, node = entry.get("Service") or {}, entry.get("Node") or {}
            statuses = {c.get("Status") for c in entry.get("Checks") or []}
            warning = "warning" in statuses and "critical" not in statuses
            weights = svc.get("Weights") or {}
            instances.append({
                "host": svc.get("Address") or node.get("Address"),
                "port": svc.get("Port"),
                "healthy": "critical" not in statuses and (self.warning_healthy or not warning),
                "weight": weights.get("Warning" if warning else "Passing", 1),
                "metadata": svc.get("Meta") or {},
                "zone": (node.get("Meta") or {}).get("zone", ""),
            })
        return {"name": name, "instances": instances}

    def _salvaged(self, records: list[dict[str, Any]]) -> list[Service]:
        out = salvage_services(records)
        for problem in out.problems:
            log_event(log, logging.WARNING, "source.entry_dropped", source=self.name, problem=problem)
        return out.services


def _key(name: str) -> ServiceKey:
    return ServiceKey(DEFAULT_NAMESPACE, DEFAULT_GROUP, name)
