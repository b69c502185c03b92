"""A token bucket: how xdscp bounds what one client may ask per second (an xDS stream,
a Nacos gRPC connection)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` requests per second, with a burst of twice that."""

    __slots__ = ("rate", "_tokens", "_last", "_clock")

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = 2 * rate
        self._last = clock()

    def take(self) -> bool:
        """Spend one token; False (and nothing spent) when the bucket is empty."""
        now = self._clock()
        tokens = min(2 * self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if tokens < 1:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1
        return True
