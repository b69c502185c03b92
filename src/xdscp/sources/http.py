"""``kind: http``: poll a JSON service list over HTTP, and push what changed.

The document is the registry file's schema in JSON: ``{"services": [...]}``. Polls
send ``If-None-Match`` with the last ETag, so an unchanged list costs a 304 and no
parsing; without ETags, an unchanged body is recognised by its hash.

What the endpoint says is applied, including "no services" (a 200 with
``"services": []``). What it cannot say is never mistaken for that: a connection
error, a timeout, a non-200 status or a body that is not the JSON document keeps the
last good view, is reported in /readyz and the ``xdscp_source_up`` gauge, and is
retried with backoff. A bad instance or service inside a good document is dropped
alone, with a log line (see ``salvage``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass

import aiohttp

from xdscp.errors import XdscpError
from xdscp.gc_pause import gc_paused
from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.model.service import Service, ServiceKey
from xdscp.model.updates import changes_between
from xdscp.sources.entry_memo import EntryMemo
from xdscp.sources.health import RemoteSource, SourceHealth
from xdscp.sources.salvage import Outcome, Salvaged, salvage_services

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024


class HttpSourceError(XdscpError):
    """This poll produced nothing usable; the last good view stays."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    url: str
    interval: float
    timeout: float
    headers: dict[str, str]


class HttpSource(RemoteSource):
    """Polls ``url`` every ``interval`` seconds (backing off while it fails)."""

    kind = "http"

    def __init__(self, name: str, cfg: HttpSettings) -> None:
        self.name = name
        self.url = cfg.url
        self.interval = cfg.interval
        self.timeout = cfg.timeout
        self.headers = dict(cfg.headers)
        self.health = SourceHealth(name, log, max(cfg.interval, 0.5))
        self._etag: str | None = None
        self._digest: bytes | None = None
        # Only the records that changed since the last document are validated again.
        self._memo: EntryMemo[Outcome] = EntryMemo()
        self._applied: dict[ServiceKey, Service] | None = None

    def next_delay(self) -> float:
        """The poll interval while healthy; backing off while failing."""
        return self.health.retry_delay() if self.health.failures else self.interval

    async def run(self, registry: Registry) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await self.poll_once(session, registry)
                await asyncio.sleep(self.next_delay())

    async def poll_once(self, session: aiohttp.ClientSession, registry: Registry) -> None:
        try:
            body, etag = await self._fetch(session)
            if body is None:
                self._ok()
                return  # 304: nothing changed
            digest = hashlib.blake2b(body, digest_size=16).digest()
            if digest == self._digest:
                self._etag = etag
                self._ok()
                return
            salvaged = await asyncio.to_thread(self._parse, body)  # a large document: off the event loop
        except HttpSourceError as e:
            self._memo.discard()
            self._fail(str(e))
            return
        self._memo.commit()
        for problem in salvaged.problems:
            log_event(log, logging.WARNING, "source.entry_dropped", source=self.name, url=self.url,
                      problem=problem)
        update = changes_between(self._applied, salvaged.by_key)
        self._applied = salvaged.by_key
        changed = registry.apply(self.name, update)
        self._digest, self._etag = digest, etag
        self._ok()
        log_event(log, logging.INFO, "source.loaded", source=self.name, url=self.url,
                  services=len(salvaged.by_key), changed=len(changed), dropped=len(salvaged.problems))

    async def _fetch(self, session: aiohttp.ClientSession) -> tuple[bytes | None, str | None]:
        headers = dict(self.headers)
        if self._etag is not None:
            headers["If-None-Match"] = self._etag
        try:
            async with session.get(self.url, headers=headers) as resp:
                if resp.status == 304:
                    return None, self._etag
                if resp.status != 200:
                    raise HttpSourceError(f"{self.url} answered HTTP {resp.status}")
                if resp.content_length is not None and resp.content_length > MAX_BODY:
                    raise HttpSourceError(f"{self.url} sent {resp.content_length} bytes (limit {MAX_BODY})")
                # read(n) answers what has arrived (a 64 KB chunk of a large list): read to the end.
                body = bytearray()
                async for chunk in resp.content.iter_chunked(1 << 20):
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise HttpSourceError(f"{self.url} sent more than {MAX_BODY} bytes")
                return bytes(body), resp.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise HttpSourceError(f"cannot reach {self.url}: {type(e).__name__} {e}".rstrip()) from None

    def _parse(self, body: bytes) -> Salvaged:
        with gc_paused():  # a large document allocates a million objects, freed without it
            return self._salvage(body)

    def _salvage(self, body: bytes) -> Salvaged:
        if not body.strip():
            raise HttpSourceError(f"{self.url} sent an empty body; send {{\"services\": []}} to serve none")
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise HttpSourceError(f"{self.url} did not send JSON: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("services"), list):
            raise HttpSourceError(f"{self.url}: the document must be an object with a \"services\" list")
        return salvage_services(doc["services"], self._memo)

    def _ok(self) -> None:
        self.health.ok()

    def _fail(self, reason: str) -> None:
        self.health.failed(reason, url=self.url, kept_last_good=self._digest is not None)
