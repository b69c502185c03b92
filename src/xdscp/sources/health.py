"""Whether a source can read its registry now, and how long to wait before trying again.

Shared by every source that reads a registry: a failed read keeps the last good view
(nothing is pushed), is logged once per failure, and sets ``last_error`` (shown by
/readyz, /debug/sources and the ``xdscp_source_up`` gauge); a source that retries
backs off, doubling up to 30 s. One good read, changed or not, resets all of it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from xdscp.logfmt import log_event
from xdscp.metrics import SOURCE_LAST_SYNC
from xdscp.sources.base import WatchingSource

MAX_BACKOFF = 30.0


class SourceHealth:
    """The read state of one source."""

    def __init__(self, source: str, logger: logging.Logger, base_delay: float | None,
                 max_delay: float = MAX_BACKOFF) -> None:
        """``base_delay``: the first retry's delay; None for a source that does not retry
        (a file is read again when it changes)."""
        self.source = source
        self.log = logger
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.failures = 0
        self.last_error: str | None = None

    def retry_delay(self) -> float:
        """Seconds before the next try: ``base_delay``, doubling per failure up to ``max_delay``."""
        base = self.base_delay if self.base_delay is not None else 0.0
        return float(min(self.max_delay, base * 2 ** max(0, self.failures - 1)))

    def ok(self) -> None:
        self.failures = 0
        self.last_error = None
        SOURCE_LAST_SYNC.labels(self.source).set(time.time())

    def failed(self, reason: str, **fields: Any) -> None:
        self.failures += 1
        self.last_error = reason
        # The previous view stays in force: nothing is pushed, nothing is wiped.
        retry = {} if self.base_delay is None else {"retry_in": round(self.retry_delay(), 2)}
        log_event(self.log, logging.ERROR, "source.rejected", source=self.source, reason=reason, **retry, **fields)


class RemoteSource(WatchingSource):
    """The part of the Source contract every registry read over the network shares."""

    health: SourceHealth

    reads_network = True

    @property
    def last_error(self) -> str | None:
        return self.health.last_error

    def close(self) -> None:
        pass  # connections live inside run()
