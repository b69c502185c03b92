"""``kind: nacos``: follow the services of a Nacos server's groups over its HTTP API.

Every ``interval`` the source lists the services of each configured group and fetches
each service's instances (concurrently), then pushes only the services whose instance
lists changed. A new service therefore appears within one interval (a second by
default), not on a 30 s relist.

``api_version`` picks the API generation: ``v1`` (Nacos 1.x, and 2.x with v1 on),
``v2`` (2.x), ``v3`` (3.x, where v1 is off by default: services from the admin API's
``/nacos/v3/admin/ns/service/list``, which needs an admin user, and instances from the
client API's ``/nacos/v3/client/ns/instance/list``), or ``auto`` (the default): the
first of v1, v3, v2 whose service list answers in that API's shape, detected again
after any failed round, so a server upgraded from 2.x to 3.x is followed without a
config change. Nacos fields map one to one: ``ip``/``port``/``weight``/``healthy``/
``enabled``/``ephemeral``, ``clusterName`` (kept as the instance's cluster) and ``metadata``. A service
``group@@name`` in namespace ``ns`` becomes the key (ns, group, name), so its Envoy
cluster is ``name`` in public/DEFAULT_GROUP and ``name.group.ns`` elsewhere.

``transport: grpc`` subscribes and applies pushes instead (xdscp.sources.nacos.subscriptions).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

import aiohttp

from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.model.service import DEFAULT_NAMESPACE, ServiceKey
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.nacos_protocol import SERVICE_PAGE_SIZE, nacos_instance, split_grouped_name
from xdscp.sources.health import RemoteSource, SourceHealth
from xdscp.sources.nacos.errors import NacosError, NacosLoginFailed, NacosUnreachable
from xdscp.sources.nacos.servers import NacosServers
from xdscp.sources.nacos.settings import NacosSettings
from xdscp.sources.nacos.subscriptions import NacosSubscriptions
from xdscp.sources.salvage import salvage_services

log = logging.getLogger(__name__)

# (service list, instance list) per API generation. Nacos 3's client API lists one
# service's instances only; listing services is its admin API's job.
_PATHS = {
    "v1": ("/nacos/v1/ns/service/list", "/nacos/v1/ns/instance/list"),
    "v2": ("/nacos/v2/ns/service/list", "/nacos/v2/ns/instance/list"),
    "v3": ("/nacos/v3/admin/ns/service/list", "/nacos/v3/client/ns/instance/list"),
}
_DETECT_ORDER = ("v1", "v3", "v2")  # v1 answers on 1.x and 2.x; 3.x turns it off
_CONCURRENCY = 16


class NacosSource(RemoteSource):
    """Follows one Nacos namespace's groups: polled over HTTP, or pushed over gRPC."""

    kind = "nacos"

    def __init__(self, name: str, cfg: NacosSettings) -> None:
        self.name = name
        self.namespace = cfg.namespace or DEFAULT_NAMESPACE
        self.groups = tuple(cfg.groups)
        self.auto = cfg.api_version == "auto"
        self.api: str = "v1" if self.auto else cfg.api_version
        self._detected = not self.auto
        self.interval = cfg.interval
        self.timeout = cfg.timeout
        self.servers = NacosServers(cfg)
        # Polling retries on its own rhythm; a push connection is re-opened at once.
        self.health = SourceHealth(name, log, 0.5 if cfg.transport == "grpc" else max(cfg.interval, 0.5))
        self._digests: dict[ServiceKey, bytes] = {}  # of each service's last applied record
        self._synced = False
        self.push = (NacosSubscriptions(name, self.namespace, self.groups, cfg, self.servers, self.health)
                     if cfg.transport == "grpc" else None)

    async def run(self, registry: Registry) -> None:
        if self.push is not None:
            await self.push.run(registry)
            return
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            while True:
                try:
                    await self.poll_once(session, registry)
                    self.health.ok()
                except NacosError as e:
                    self.servers.rotate()  # next time, the next server
                    self._detected = not self.auto  # which may speak another API version
                    self.health.failed(str(e), kept_last_good=self._synced)
                await asyncio.sleep(self.health.retry_delay() if self.health.failures else self.interval)

    # -- one round -----------------------------------------------------------------------
    async def poll_once(self, session: aiohttp.ClientSession, registry: Registry) -> None:
        if not self._detected:
            await self._detect(session)
        keys = [ServiceKey(self.namespace, g, n) for g in self.groups for n in await self._service_names(session, g)]
        sem = asyncio.Semaphore(_CONCURRENCY)

        async def fetch(key: ServiceKey) -> tuple[ServiceKey, list[dict[str, Any]]]:
            async with sem:
                return key, await self._hosts(session, key)

        fetched = await asyncio.gather(*(fetch(k) for k in keys))
        records, digests = [], {}
        for key, hosts in fetched:
            record = {"name": key.name, "namespace": key.namespace, "group": key.group,
                      "instances": [nacos_instance(h) for h in hosts]}
            digests[key] = hashlib.blake2b(json.dumps(record, sort_keys=True).encode(), digest_size=16).digest()
            records.append(record)
        changed_keys = {k for k, d in digests.items() if self._digests.get(k) != d}
        removed = tuple(k for k in self._digests if k not in digests)
        if self._synced and not changed_keys and not removed:
            return
        salvaged = salvage_services([r for r in records if not self._synced or _key_of(r) in changed_keys])
        for problem in salvaged.problems:
            log_event(log, logging.WARNING, "source.entry_dropped", source=self.name, problem=problem)
        if not self._synced:
            registry.apply(self.name, FullSnapshot.of(salvaged.services))
        else:
            # A service whose record no longer validates as a whole is removed too.
            kept = {s.key for s in salvaged.services}
            dropped = tuple(k for k in changed_keys if k not in kept)
            registry.apply(self.name, ServiceChange(upserted=tuple(salvaged.services), removed=removed + dropped))
        self._digests = digests
        self._synced = True
        log_event(log, logging.INFO, "source.loaded", source=self.name, services=len(digests),
                  changed=len(changed_keys), removed=len(removed), api=self.api)

    # -- the Nacos API -------------------------------------------------------------------
    async def _detect(self, session: aiohttp.ClientSession) -> None:
        """Settle ``self.api`` on the first version whose service list answers in its shape."""
        refused: list[str] = []
        for api in _DETECT_ORDER:
            self.api = api
            try:
                await self._service_page(session, self.groups[0], 1, 1)
            except (NacosUnreachable, NacosLoginFailed):
                raise
            except NacosError as e:
                refused.append(f"{api}: {e}")
                continue
            self._detected = True
            log_event(log, logging.INFO, "source.api_detected", source=self.name, api=api,
                      server=self.servers.current)
            return
        raise NacosError("no Nacos naming API (v1, v3, v2) answered: " + "; ".join(refused))

    async def _service_names(self, session: aiohttp.ClientSession, group: str) -> list[str]:
        names: list[str] = []
        page = 1
        while True:
            batch, count = await self._service_page(session, group, page, SERVICE_PAGE_SIZE)
            names += batch
            if len(batch) < SERVICE_PAGE_SIZE or len(names) >= count:
                return names
            page += 1

    async def _service_page(self, session: aiohttp.ClientSession, group: str, page: int,
                            size: int) -> tuple[list[str], int]:
        """One page of a group's service names, and how many there are in all."""
        data = await self._get(session, 0, {"pageNo": page, "pageSize": size, "namespaceId": self.namespace,
                                            "groupName": group})
        if not isinstance(data, dict):
            raise NacosError(f"{self._url(0)}: no service list in the answer")
        if self.api == "v3":
            items = data.get("pageItems")
            batch = [i.get("name") for i in items if isinstance(i, dict)] if isinstance(items, list) else None
            count = data.get("totalCount", 0)
        else:
            batch = data.get("doms") if self.api == "v1" else data.get("services")
            count = data.get("count", 0)
        if not isinstance(batch, list) or not isinstance(count, int):
            raise NacosError(f"{self._url(0)}: no service list in the answer")
        return [split_grouped_name(str(n), group)[1] for n in batch if n], count

    async def _hosts(self, session: aiohttp.ClientSession, key: ServiceKey) -> list[dict[str, Any]]:
        data = await self._get(session, 1, {
            "serviceName": key.name, "groupName": key.group, "namespaceId": key.namespace, "healthyOnly": "false"})
        hosts = data if self.api == "v3" else data.get("hosts") if isinstance(data, dict) else None
        if not isinstance(hosts, list):
            raise NacosError(f"{self._url(1)} for {key.name}: no hosts in the answer")
        return [h for h in hosts if isinstance(h, dict)]

    def _url(self, which: int) -> str:
        """The current server's service list (0) or instance list (1) URL."""
        return self.servers.current + _PATHS[self.api][which]

    async def _get(self, session: aiohttp.ClientSession, which: int, params: dict[str, Any]) -> Any:
        """GET the service list (0) or instance list (1); the answer's data (v2/v3) or body (v1)."""
        await self.servers.login(session)
        query = {k: str(v) for k, v in params.items()}
        if self.servers.token:
            query["accessToken"] = self.servers.token
        url = self._url(which)
        try:
            async with session.get(url, params=query) as resp:
                text = await resp.text()
                if resp.status in (401, 403):
                    self.servers.refused()
                if resp.status != 200:
                    raise NacosError(f"{url} answered HTTP {resp.status}: {text[:200]}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise NacosUnreachable(f"cannot reach Nacos at {url}: {type(e).__name__} {e}".rstrip()) from None
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            raise NacosError(f"{url} did not answer JSON: {text[:200]}") from None
        if self.api == "v1":
            if not isinstance(body, dict) or "code" in body and "data" in body:  # v2/v3's shape
                raise NacosError(f"{url}: not a Nacos v1 answer: {text[:200]}")
            return body
        if not isinstance(body, dict) or body.get("code") != 0 or "data" not in body:
            raise NacosError(f"{url}: Nacos error {body.get('code') if isinstance(body, dict) else '?'}: "
                             f"{body.get('message') if isinstance(body, dict) else text[:200]}")
        return body["data"]


def _key_of(record: dict[str, Any]) -> ServiceKey:
    return ServiceKey(record["namespace"], record["group"], record["name"])

