"""``kind: etcd``: services as JSON values under a key prefix, followed with etcd's watch.

Schema, under ``prefix`` (default ``/xdscp/services``):

* ``{prefix}/{service}/{instance-id}``: one instance, the registry file's instance
  object (``{"host": "10.0.0.1", "port": 8080, "weight": 2, ...}``). The id is free
  (``10.0.0.1:8080``, a pod name, a lease-bound key).
* ``{prefix}/{service}``: optional service settings, the registry file's service
  object without ``name`` and ``instances`` (``{"lb_policy": "RANDOM"}``).

It speaks etcd's v3 JSON gateway (``/v3/kv/range``, ``/v3/watch``), which every etcd
3.4+ serves on its client port, so no extra client library is needed. A full listing
gives the revision; the watch starts right after it, and after a disconnect it resumes
from the last revision seen, so no event is lost or applied twice. If etcd compacted
past that revision, the source lists everything again. While etcd cannot be reached
the last good view stays (see ``HttpSource`` for the same rule).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp

from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.model.service import Service, ServiceKey
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.sources.health import RemoteSource, SourceHealth
from xdscp.sources.salvage import salvage_services

log = logging.getLogger(__name__)

_MAX_LINE = 64 * 1024 * 1024


class EtcdError(Exception):
    """etcd could not be read; the last good view stays."""


class _Compacted(Exception):
    """The watch's start revision was compacted away: list everything again."""


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _prefix_end(prefix: str) -> str:
    """The smallest key after every key starting with ``prefix`` (etcd's range_end)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # prefix always ends with "/", so no overflow
    return raw.decode()


class EtcdSource(RemoteSource):
    """Lists ``prefix`` once, then follows it with a watch from the listed revision."""

    kind = "etcd"

    def __init__(self, name: str, endpoints: list[str], prefix: str = "/xdscp/services",
                 timeout: float = 5.0, username: str | None = None, password: str | None = None) -> None:
        self.name = name
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.prefix = prefix.rstrip("/") + "/"
        self.timeout = timeout
        self.username, self.password = username, password
        self.health = SourceHealth(name, log, 0.5)
        self.revision = 0  # of the last listing or event applied
        self._kvs: dict[str, bytes] = {}  # relative key -> value
        self._applied: dict[str, ServiceKey] = {}  # service name -> the key it was applied under
        self._endpoint = 0
        self._token: str | None = None

    # -- the loop ----------------------------------------------------------------------
    async def run(self, registry: Registry) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    if not self.revision:
                        await self.list_all(session, registry)
                    await self.follow(session, registry)
                except _Compacted:
                    log_event(log, logging.WARNING, "source.compacted", source=self.name, revision=self.revision)
                    self.revision = 0
                    continue
                except EtcdError as e:
                    self._fail(str(e))
                except (aiohttp.ClientError, TimeoutError) as e:
                    self._fail(f"cannot reach etcd at {self._url('')}: {type(e).__name__} {e}".rstrip())
                await asyncio.sleep(self.health.retry_delay())

    def _url(self, path: str) -> str:
        return self.endpoints[self._endpoint % len(self.endpoints)] + path

    async def _headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        if self.username is None:
            return {}
        if self._token is None:
            body = {"name": self.username, "password": self.password or ""}
            data = await self._post(session, "/v3/auth/authenticate", body, auth=False)
            self._token = str(data.get("token", ""))
        return {"Authorization": self._token}

    async def _post(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any],
                    auth: bool = True) -> dict[str, Any]:
        headers = await self._headers(session) if auth else {}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with session.post(self._url(path), json=body, headers=headers, timeout=timeout) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                self._token = None if resp.status in (401, 403) else self._token
                raise EtcdError(f"etcd {path} answered HTTP {resp.status}: {data.get('message') or data}")
            return dict(data)

    # -- listing and watching ----------------------------------------------------------
    async def list_all(self, session: aiohttp.ClientSession, registry: Registry) -> None:
        data = await self._post(session, "/v3/kv/range",
                                {"key": _b64(self.prefix), "range_end": _b64(_prefix_end(self.prefix))})
        kvs: dict[str, bytes] = {}
        for kv in data.get("kvs", []):
            key = base64.b64decode(kv["key"]).decode(errors="replace")
            kvs[key[len(self.prefix):]] = base64.b64decode(kv.get("value", ""))
        self._kvs = kvs
        self.revision = int(data["header"]["revision"])
        services = self._build(self._service_names(kvs))
        self._applied = {s.name: s.key for s in services}
        changed = registry.apply(self.name, FullSnapshot.of(services))
        self._ok()
        log_event(log, logging.INFO, "source.loaded", source=self.name, revision=self.revision,
                  services=len(services), changed=len(changed))

    async def follow(self, session: aiohttp.ClientSession, registry: Registry) -> None:
        """Apply watch events until the stream ends (then the caller resumes it)."""
        body = {"create_request": {"key": _b64(self.prefix), "range_end": _b64(_prefix_end(self.prefix)),
                                   "start_revision": str(self.revision + 1)}}
        headers = await self._headers(session)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_connect=self.timeout)
        async with session.post(self._url("/v3/watch"), json=body, headers=headers, timeout=timeout) as resp:
            if resp.status != 200:
                raise EtcdError(f"etcd watch answered HTTP {resp.status}")
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                if len(buf) > _MAX_LINE:
                    raise EtcdError("etcd sent a watch message over 64 MiB")
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._on_message(json.loads(line), registry)

    def _on_message(self, msg: dict[str, Any], registry: Registry) -> None:
        if "error" in msg:
            raise EtcdError(f"etcd watch failed: {msg['error'].get('message', msg['error'])}")
        result = msg.get("result", {})
        if int(result.get("compact_revision", 0) or 0) > 0:
            raise _Compacted()
        if result.get("canceled"):
            raise EtcdError(f"etcd cancelled the watch: {result.get('cancel_reason', '')}")
        if result.get("created"):
            self._ok()
        touched: set[str] = set()
        for ev in result.get("events", []):
            kv = ev["kv"]
            key = base64.b64decode(kv["key"]).decode(errors="replace")[len(self.prefix):]
            if ev.get("type") == "DELETE":
                self._kvs.pop(key, None)
            else:
                self._kvs[key] = base64.b64decode(kv.get("value", ""))
            touched.add(key.split("/", 1)[0])
            self.revision = max(self.revision, int(kv.get("mod_revision", 0)))
        if not touched:
            return
        self.revision = max(self.revision, int(result["header"]["revision"]))
        services = self._build(touched)
        present = {s.name: s.key for s in services}
        # Removed: a service whose records are gone, or whose key moved (its settings
        # changed namespace or group).
        removed = [old for name in touched if (old := self._applied.get(name)) is not None
                   and present.get(name) != old]
        for name in touched:
            self._applied.pop(name, None)
        self._applied.update(present)
        registry.apply(self.name, ServiceChange(upserted=tuple(services), removed=tuple(removed)))
        log_event(log, logging.INFO, "source.changed", source=self.name, revision=self.revision,
                  services=sorted(touched))

    # -- records -> services -----------------------------------------------------------
    @staticmethod
    def _service_names(kvs: Iterable[str]) -> set[str]:
        return {k.split("/", 1)[0] for k in kvs if k}

    def _build(self, names: Iterable[str]) -> list[Service]:
        wanted = set(names)
        grouped: dict[str, list[tuple[str, bytes]]] = {}
        for key, value in self._kvs.items():
            name = key.split("/", 1)[0]
            if name in wanted:
                grouped.setdefault(name, []).append((key, value))
        records: list[dict[str, Any]] = []
        for name in sorted(grouped):
            settings: dict[str, Any] = {}
            instances: list[Any] = []
            for key, value in sorted(grouped[name]):
                try:
                    doc = json.loads(value)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    self._dropped(f"{self.prefix}{key}: the value is not JSON; ignored")
                    continue
                if key == name:
                    if not isinstance(doc, dict):
                        self._dropped(f"{self.prefix}{key}: service settings must be an object; ignored")
                        continue
                    settings = {k: v for k, v in doc.items() if k not in ("name", "instances")}
                elif "/" in key[len(name) + 1:]:
                    self._dropped(f"{self.prefix}{key}: too deep (want {self.prefix}SERVICE/ID); ignored")
                else:
                    instances.append(doc)
            records.append({**settings, "name": name, "instances": instances})
        salvaged = salvage_services(records)
        for problem in salvaged.problems:
            self._dropped(problem)
        return salvaged.services

    def _dropped(self, problem: str) -> None:
        log_event(log, logging.WARNING, "source.entry_dropped", source=self.name, problem=problem)

    def _ok(self) -> None:
        self.health.ok()

    def _fail(self, reason: str) -> None:
        self._endpoint += 1  # try the next endpoint
        self.health.failed(reason, kept_last_good=self.revision > 0)
