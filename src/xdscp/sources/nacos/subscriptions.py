"""``kind: nacos`` with ``transport: grpc``: subscribe to every service and apply Nacos' pushes.

Over one push connection (xdscp.sources.nacos.push) the source lists each group's
services, subscribes to each, and from then on applies every ``NotifySubscriberRequest``
as it arrives: an instance change reaches Envoy without waiting for a poll. The service
lists are still read every ``interval`` (Nacos pushes changes of subscribed services,
not new services), to subscribe to new ones and drop removed ones. After a broken
connection the source reconnects to the next server, subscribes again and replaces its
whole view in one step; until then the last good view stays.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.model.service import Service, ServiceKey
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.nacos_protocol import GRPC_PORT_OFFSET, SERVICE_PAGE_SIZE, nacos_instance, split_grouped_name
from xdscp.sources.health import SourceHealth
from xdscp.sources.nacos.errors import NacosError
from xdscp.sources.nacos.push import NacosPushError, NacosPushSession
from xdscp.sources.nacos.servers import NacosServers
from xdscp.sources.nacos.settings import NacosSettings
from xdscp.sources.salvage import salvage_services

log = logging.getLogger("xdscp.sources.nacos")

_CONCURRENCY = 16


class NacosSubscriptions:
    """The push mode of one Nacos source: ``groups`` of ``namespace``, on ``servers``."""

    def __init__(self, name: str, namespace: str, groups: tuple[str, ...], cfg: NacosSettings,
                 servers: NacosServers, health: SourceHealth) -> None:
        self.name = name
        self.namespace = namespace
        self.groups = groups
        self.interval = cfg.interval
        self.timeout = cfg.timeout
        self.grpc_port = cfg.grpc_port
        self.servers = servers
        self.health = health
        self.subscribed: set[ServiceKey] = set()  # applied to the registry, followed by push
        self._subscribing: set[ServiceKey] = set()  # asked for, answer not applied yet
        # The newest serviceInfo per service (by lastRefTime): a push may overtake the
        # answer to its own subscription, and the older of the two must not win.
        self._latest: dict[ServiceKey, tuple[int, Any]] = {}
        self._registry: Registry | None = None
        self._synced = False

    async def run(self, registry: Registry) -> None:
        self._registry = registry
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http:
            while True:
                session: NacosPushSession | None = None
                try:
                    await self.servers.login(http)  # over HTTP, as Nacos' SDKs do; the token rides in headers
                    session = NacosPushSession(self._target(), self.namespace, self._headers(), self._pushed,
                                               self.timeout)
                    await session.open()
                    await self.sync(session, first=True)
                    self.health.ok()
                    await self._follow(session)
                except (NacosPushError, NacosError) as e:
                    self.servers.rotate()
                    self.health.failed(str(e), kept_last_good=self._synced)
                finally:
                    if session is not None:
                        await session.close()
                await asyncio.sleep(self.health.retry_delay())

    async def _follow(self, session: NacosPushSession) -> None:
        """Re-read the service lists every interval until the connection ends."""
        closed = asyncio.ensure_future(session.closed())
        try:
            while True:
                done, _ = await asyncio.wait({closed}, timeout=self.interval)
                if done:
                    closed.result()  # raises NacosPushError
                await self.sync(session, first=False)
        finally:
            closed.cancel()

    def _target(self) -> str:
        url = urlsplit(self.servers.current)
        port = self.grpc_port or (url.port or 8848) + GRPC_PORT_OFFSET
        return f"{url.hostname}:{port}"

    def _headers(self) -> dict[str, str]:
        token = self.servers.token
        return {"accessToken": token} if token else {}

    # -- subscriptions -----------------------------------------------------------------
    async def sync(self, session: NacosPushSession, first: bool) -> None:
        """Subscribe to services that appeared, drop those that went; ``first``: all, and
        replace the whole view (a new connection holds no subscription)."""
        keys: set[ServiceKey] = set()
        for group in self.groups:
            keys |= {ServiceKey(self.namespace, group, n) for n in await self._service_names(session, group)}
        if first:
            self.subscribed, self._latest = set(), {}
        held = self.subscribed
        new, gone = sorted(keys - held), sorted(held - keys)
        self._subscribing = set(new)
        sem = asyncio.Semaphore(_CONCURRENCY)

        async def subscribe(key: ServiceKey) -> None:
            async with sem:
                answer = await session.request("SubscribeServiceRequest", _service_body(key, subscribe=True))
            info = answer.get("serviceInfo")
            self._accept(key, info if isinstance(info, dict) else {"hosts": []})

        await asyncio.gather(*(subscribe(k) for k in new))
        for key in gone:
            await session.request("SubscribeServiceRequest", _service_body(key, subscribe=False))
            self._latest.pop(key, None)
        services = self._services([(k, self._latest.get(k, (0, []))[1]) for k in new])
        self.subscribed = (held | set(new)) - set(gone)
        self._subscribing = set()
        assert self._registry is not None
        if first:
            self._registry.apply(self.name, FullSnapshot.of(services))
            self._synced = True
            log_event(log, logging.INFO, "source.loaded", source=self.name, services=len(services), transport="grpc")
        elif new or gone:
            self._registry.apply(self.name, ServiceChange(upserted=tuple(services), removed=tuple(gone)))
            log_event(log, logging.INFO, "source.changed", source=self.name, subscribed=len(new),
                      unsubscribed=len(gone), transport="grpc")

    def _accept(self, key: ServiceKey, info: dict[str, Any]) -> bool:
        """Keep ``info`` as the service's state unless a newer one is held."""
        ref = info.get("lastRefTime")
        ref = ref if isinstance(ref, int) else 0
        held = self._latest.get(key)
        if held is not None and held[0] > ref:
            return False
        self._latest[key] = (ref, info.get("hosts"))
        return True

    async def _service_names(self, session: NacosPushSession, group: str) -> list[str]:
        names: list[str] = []
        page = 1
        while True:
            answer = await session.request("ServiceListRequest", {
                "namespace": self.namespace, "groupName": group, "serviceName": "",
                "pageNo": page, "pageSize": SERVICE_PAGE_SIZE, "selector": ""})
            batch, count = answer.get("serviceNames"), answer.get("count", 0)
            if not isinstance(batch, list) or not isinstance(count, int):
                raise NacosPushError(f"ServiceListRequest to {session.target}: no service list in the answer")
            names += [split_grouped_name(str(n), group)[1] for n in batch if n]
            if len(batch) < SERVICE_PAGE_SIZE or len(names) >= count:
                return names
            page += 1

    def _pushed(self, info: dict[str, Any]) -> None:
        """A NotifySubscriberRequest's serviceInfo: apply that one service now."""
        group, name = split_grouped_name(str(info.get("name", "")), None)
        key = ServiceKey(self.namespace, str(info.get("groupName") or group), name)
        if key in self._subscribing:
            self._accept(key, info)  # applied with its subscription's answer, whichever is newer
            return
        if key not in self.subscribed or self._registry is None or not self._accept(key, info):
            return
        services = self._services([(key, info.get("hosts"))])
        removed = () if services else (key,)  # a record that no longer validates as a whole
        self._registry.apply(self.name, ServiceChange(upserted=tuple(services), removed=removed))
        log_event(log, logging.INFO, "source.pushed", source=self.name, service=repr(key),
                  instances=sum(len(s.instances) for s in services))

    def _services(self, hosts_by_key: list[tuple[ServiceKey, Any]]) -> list[Service]:
        records = [{"name": k.name, "namespace": k.namespace, "group": k.group,
                    "instances": [nacos_instance(h) for h in (hosts if isinstance(hosts, list) else [])
                                  if isinstance(h, dict)]} for k, hosts in hosts_by_key]
        salvaged = salvage_services(records)
        for problem in salvaged.problems:
            log_event(log, logging.WARNING, "source.entry_dropped", source=self.name, problem=problem)
        return salvaged.services


def _service_body(key: ServiceKey, subscribe: bool) -> dict[str, Any]:
    return {"namespace": key.namespace, "groupName": key.group, "serviceName": key.name,
            "subscribe": subscribe, "clusters": ""}
