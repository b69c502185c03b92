"""One etcd key prefix kept in memory: listed once, then followed with a watch.

A full listing gives the revision; the watch starts right after it, and after a
disconnect it resumes from the last revision seen, so no event is lost or applied twice.
If etcd compacted past that revision, the prefix is listed again. While etcd cannot be
reached the last view stays, and its owner is told nothing: nothing changed that it knows of.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xdscp.logfmt import log_event
from xdscp.sources.etcd.client import EtcdClient, EtcdError, b64, prefix_end, unb64
from xdscp.sources.health import SourceHealth

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EtcdValue:
    value: bytes
    lease: int  # 0: none


class _Compacted(Exception):
    """The watch's start revision was compacted away: list everything again."""


class EtcdMirror:
    """``kvs`` (keys relative to ``prefix``) and the ``revision`` they are at.

    ``on_reset()`` is called after each full listing, ``on_events(keys)`` after each batch
    of watch events with the relative keys it touched.
    """

    def __init__(self, name: str, client: EtcdClient, prefix: str, health: SourceHealth,
                 on_reset: Callable[[], None], on_events: Callable[[set[str]], None]) -> None:
        self.name = name
        self.client = client
        self.prefix = prefix.rstrip("/") + "/"
        self.health = health
        self.kvs: dict[str, EtcdValue] = {}
        self.revision = 0  # of the last listing or event applied; 0 before the first listing
        self._on_reset = on_reset
        self._on_events = on_events
        self._advanced = asyncio.Event()
        self._wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                if not self.revision:
                    await self.list_all()
                await self.follow()
            except _Compacted:
                log_event(log, logging.WARNING, "source.compacted", source=self.name, revision=self.revision)
                self.revision = 0
                continue
            except EtcdError as e:
                self.health.failed(str(e), kept_last_good=self.revision > 0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.health.retry_delay())

    def wake(self) -> None:
        """etcd answered someone else: if the watch is waiting to retry, retry now."""
        self._wake.set()

    async def wait_for(self, revision: int, timeout: float) -> bool:
        """Wait until the mirror has applied ``revision`` (a write's own); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.revision < revision:
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._advanced.clear()
            try:
                await asyncio.wait_for(self._advanced.wait(), left)
            except TimeoutError:
                return self.revision >= revision
        return True

    async def list_all(self) -> None:
        span = {"key": b64(self.prefix), "range_end": b64(prefix_end(self.prefix))}
        data = await self.client.call("/v3/kv/range", span)
        kvs: dict[str, EtcdValue] = {}
        for kv in data.get("kvs", []):
            key = unb64(kv["key"]).decode(errors="replace")
            kvs[key[len(self.prefix):]] = EtcdValue(unb64(kv.get("value", "")), int(kv.get("lease", 0) or 0))
        self.kvs = kvs
        self._set_revision(int(data["header"]["revision"]))
        self.health.ok()
        self._on_reset()

    async def follow(self) -> None:
        """Apply watch events until the stream ends (then ``run`` resumes it)."""
        body = {"create_request": {"key": b64(self.prefix), "range_end": b64(prefix_end(self.prefix)),
                                   "start_revision": str(self.revision + 1)}}
        async for msg in self.client.watch(body):
            self._on_message(msg)

    def _on_message(self, msg: dict[str, Any]) -> None:
        if "error" in msg:
            raise EtcdError(f"etcd watch failed: {msg['error'].get('message', msg['error'])}")
        result = msg.get("result", {})
        if int(result.get("compact_revision", 0) or 0) > 0:
            raise _Compacted()
        if result.get("canceled"):
            raise EtcdError(f"etcd cancelled the watch: {result.get('cancel_reason', '')}")
        if result.get("created"):
            self.health.ok()
        touched: set[str] = set()
        revision = self.revision
        for ev in result.get("events", []):
            kv = ev["kv"]
            key = unb64(kv["key"]).decode(errors="replace")[len(self.prefix):]
            if ev.get("type") == "DELETE":
                self.kvs.pop(key, None)
            else:
                self.kvs[key] = EtcdValue(unb64(kv.get("value", "")), int(kv.get("lease", 0) or 0))
            touched.add(key)
            revision = max(revision, int(kv.get("mod_revision", 0)))
        if touched:
            revision = max(revision, int(result["header"]["revision"]))
            self._on_events(touched)
        self._set_revision(revision)

    def _set_revision(self, revision: int) -> None:
        if revision > self.revision or not self.revision:
            self.revision = revision
            self._advanced.set()
