"""Time as the waiting loops see it: ``now()`` and ``sleep()``, so a test can drive them."""

from __future__ import annotations

import asyncio
import time


class Clock:
    """The real clock: monotonic time and asyncio's sleep. Tests pass a clock they advance."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


MONOTONIC = Clock()
