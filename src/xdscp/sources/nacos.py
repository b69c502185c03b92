"""``kind: nacos``: follow the services of a Nacos server's groups over its HTTP API.

Every ``interval`` the source lists the services of each configured group and fetches
each service's instances (concurrently), then pushes only the services whose instance
lists changed. A new service therefore appears within one interval (a second by
default), not on a 30 s relist.

``api_version`` picks the API generation: ``v1`` (Nacos 1.x, and 2.x with v1 on),
``v2`` (2.x), ``v3`` (the 3.x client API; v1 is off by default on 3.x). Nacos fields
map one to one: ``ip``/``port``/``weight``/``healthy``/``enabled``/``ephemeral``,
``clusterName`` (kept as the instance's cluster) and ``metadata``. A service
``group@@name`` in namespace ``ns`` becomes the key (ns, group, name), so its Envoy
cluster is ``name`` in public/DEFAULT_GROUP and ``name.group.ns`` elsewhere.

Push over Nacos' gRPC protocol is not spoken yet: this is short polling.
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
from xdscp.sources.health import RemoteSource, SourceHealth
from xdscp.sources.salvage import salvage_services

log = logging.getLogger(__name__)

_PATHS = {"v1": "/nacos/v1/ns", "v2": "/nacos/v2/ns", "v3": "/nacos/v3/client/ns"}
_PAGE = 1000
_CONCURRENCY = 16


class NacosError(Exception):
    """Nacos could not be read (or said something that is not its API); nothing is applied."""


class NacosSource(RemoteSource):
    """Polls one Nacos namespace's groups; pushes the services that changed."""

    kind = "nacos"

    def __init__(self, name: str, servers: list[str], namespace: str = DEFAULT_NAMESPACE,
                 groups: tuple[str, ...] = ("DEFAULT_GROUP",), api_version: str = "v1",
                 interval: float = 1.0, timeout: float = 5.0, username: str | None = None,
                 password: str | None = None, access_token: str | None = None) -> None:
        self.name = name
        self.servers = [s.rstrip("/") for s in servers]
        self.namespace = namespace or DEFAULT_NAMESPACE
        self.groups = tuple(groups)
        self.api = api_version
        self.interval = interval
        self.timeout = timeout
        self.username, self.password = username, password
        self._token = access_token
        self._static_token = access_token is not None
        self.health = SourceHealth(name, log, max(interval, 0.5))
        self._server = 0
        self._digests: dict[ServiceKey, bytes] = {}  # of each service's last applied record
        self._synced = False

    async def run(self, registry: Registry) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            while True:
                try:
                    await self.poll_once(session, registry)
                    self.health.ok()
                except NacosError as e:
                    self._server += 1  # next time, the next server
                    self.health.failed(str(e), kept_last_good=self._synced)
                await asyncio.sleep(self.health.retry_delay() if self.health.failures else self.interval)

    # -- one round -----------------------------------------------------------------------
    async def poll_once(self, session: aiohttp.ClientSession, registry: Registry) -> None:
        keys = [ServiceKey(self.namespace, g, n) for g in self.groups for n in await self._service_names(session, g)]
        sem = asyncio.Semaphore(_CONCURRENCY)

        async def fetch(key: ServiceKey) -> tuple[ServiceKey, list[dict[str, Any]]]:
            async with sem:
                return key, await self._hosts(session, key)

        fetched = await asyncio.gather(*(fetch(k) for k in keys))
        records, digests = [], {}
        for key, hosts in fetched:
            record = {"name": key.name, "namespace": key.namespace, "group": key.group,
                      "instances": [_instance(h) for h in hosts]}
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
    async def _service_names(self, session: aiohttp.ClientSession, group: str) -> list[str]:
        names: list[str] = []
        page = 1
        while True:
            data = await self._get(session, "/service/list", {
                "pageNo": page, "pageSize": _PAGE, "namespaceId": self.namespace, "groupName": group})
            batch = data.get("doms") if self.api == "v1" else data.get("services")
            if not isinstance(batch, list):
                raise NacosError(f"{self._base()}/service/list: no service list in the answer")
            names += [str(n).split("@@", 1)[-1] for n in batch]
            if len(batch) < _PAGE or len(names) >= int(data.get("count", 0)):
                return names
            page += 1

    async def _hosts(self, session: aiohttp.ClientSession, key: ServiceKey) -> list[dict[str, Any]]:
        data = await self._get(session, "/instance/list", {
            "serviceName": key.name, "groupName": key.group, "namespaceId": key.namespace, "healthyOnly": "false"})
        hosts = data.get("hosts")
        if not isinstance(hosts, list):
            raise NacosError(f"{self._base()}/instance/list for {key.name}: no hosts in the answer")
        return [h for h in hosts if isinstance(h, dict)]

    def _base(self) -> str:
        return self.servers[self._server % len(self.servers)] + _PATHS[self.api]

    async def _get(self, session: aiohttp.ClientSession, path: str, params: dict[str, Any]) -> dict[str, Any]:
        await self._login(session)
        query = {k: str(v) for k, v in params.items()}
        if self._token:
            query["accessToken"] = self._token
        url = self._base() + path
        try:
            async with session.get(url, params=query) as resp:
                text = await resp.text()
                if resp.status in (401, 403) and not self._static_token:
                    self._token = None  # expired: log in again next round
                if resp.status != 200:
                    raise NacosError(f"{url} answered HTTP {resp.status}: {text[:200]}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise NacosError(f"cannot reach Nacos at {url}: {type(e).__name__} {e}".rstrip()) from None
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            raise NacosError(f"{url} did not answer JSON: {text[:200]}") from None
        if self.api == "v1":
            if not isinstance(body, dict):
                raise NacosError(f"{url}: unexpected answer {text[:200]}")
            return body
        if not isinstance(body, dict) or body.get("code") != 0 or not isinstance(body.get("data"), dict):
            raise NacosError(f"{url}: Nacos error {body.get('code') if isinstance(body, dict) else '?'}: "
                             f"{body.get('message') if isinstance(body, dict) else text[:200]}")
        return dict(body["data"])

    async def _login(self, session: aiohttp.ClientSession) -> None:
        if self._token is not None or self.username is None:
            return
        url = self.servers[self._server % len(self.servers)] + "/nacos/v1/auth/login"
        try:
            async with session.post(url, data={"username": self.username, "password": self.password or ""}) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200 or not isinstance(body, dict) or "accessToken" not in body:
                    raise NacosError(f"Nacos login as {self.username!r} failed: HTTP {resp.status}")
                self._token = str(body["accessToken"])
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as e:
            raise NacosError(f"cannot log in to Nacos at {url}: {type(e).__name__} {e}".rstrip()) from None


def _instance(host: dict[str, Any]) -> dict[str, Any]:
    """A Nacos host object as a registry-file instance (validated later, per instance)."""
    cluster = host.get("clusterName") or ""
    return {
        "host": host.get("ip"),
        "port": host.get("port"),
        "weight": host.get("weight", 1.0),
        "healthy": host.get("healthy", host.get("valid", True)),  # "valid" in Nacos 1.x docs
        "enabled": host.get("enabled", True),
        "ephemeral": host.get("ephemeral", True),
        "cluster": "" if cluster == "DEFAULT" else cluster,
        "metadata": host.get("metadata") or {},
    }


def _key_of(record: dict[str, Any]) -> ServiceKey:
    return ServiceKey(record["namespace"], record["group"], record["name"])

