"""``kind: file``: a YAML/JSON registry file, re-read whenever it changes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from xdscp.errors import DocumentError
from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.model.service import Service, ServiceKey
from xdscp.model.updates import changes_between
from xdscp.sources.base import WatchingSource
from xdscp.sources.health import SourceHealth
from xdscp.sources.registry_file import RegistryReader

log = logging.getLogger(__name__)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks, so a ConfigMap's ..data swap is seen
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


_UNREAD = (-1, -1, -1)  # the signature before the first poll: even a missing file is news then
# A file written less than this long ago that does not parse is read again before it is
# rejected: `>` and write_text truncate first and write after, and a poll in between sees
# an empty or half-written file that its writer never meant.
SETTLE_NS = 250_000_000


@dataclass(frozen=True, slots=True)
class FileSettings:
    path: Path
    poll_interval: float


class FileSource(WatchingSource):
    """Polls the file's stat cheaply and re-reads it only when its content hash changes.

    Polling (not inotify) sees every way files get replaced: in-place writes, editors'
    rename-over, Kubernetes ConfigMap symlink swaps. A file that fails to parse or
    validate is logged with its line and field, and the last good snapshot stays. Only
    the services whose entries changed are validated and applied.
    """

    kind = "file"
    reads_network = False

    def __init__(self, name: str, settings: FileSettings) -> None:
        self.name = name
        self.path = settings.path
        self.poll_interval = settings.poll_interval
        self.health = SourceHealth(name, log, None)  # no retry: the file is read again when it changes
        self.reader = RegistryReader()
        self._last_signature: tuple[int, int, int] | None = _UNREAD
        self._last_digest: bytes | None = None
        self._applied: dict[ServiceKey, Service] | None = None  # None: nothing applied yet

    @property
    def last_error(self) -> str | None:
        return self.health.last_error

    def close(self) -> None:
        pass  # nothing held open between polls

    async def run(self, registry: Registry) -> None:
        while True:
            await self.poll_once(registry)
            await asyncio.sleep(self.poll_interval)

    async def poll_once(self, registry: Registry) -> None:
        sig = _signature(self.path)
        if sig == self._last_signature:
            return
        self._last_signature = sig
        if sig is None:
            self._fail(f"cannot read {self.path}: no such file")
            return
        try:
            data = await asyncio.to_thread(self.path.read_bytes)
        except OSError as e:
            self._fail(f"cannot read {self.path}: {e.strerror}")
            return
        if _signature(self.path) != sig:
            self._last_signature = None  # written to while we read it: read again next poll
            return
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if digest == self._last_digest:
            self.health.ok()  # the last good content again (repaired, or touched): nothing to apply
            return
        try:
            services = await asyncio.to_thread(self.reader.read, data, str(self.path))
        except DocumentError as e:
            if 0 <= time.time_ns() - sig[0] < SETTLE_NS:
                self._last_signature = None  # still being written, perhaps: read again next poll
                return
            self._fail(str(e), problems=[str(p) for p in e.problems])
            return
        self._last_digest = digest
        self.health.ok()
        update = changes_between(self._applied, services)
        self._applied = services
        changed = registry.apply(self.name, update)
        log_event(log, logging.INFO, "source.loaded", source=self.name, file=str(self.path),
                  services=len(services), changed=len(changed))

    def _fail(self, reason: str, problems: list[str] | None = None) -> None:
        # The previous snapshot stays in force: nothing is pushed, nothing is wiped.
        self.health.failed(reason, file=str(self.path), kept_last_good=self._last_digest is not None,
                           **({"problems": problems} if problems else {}))
