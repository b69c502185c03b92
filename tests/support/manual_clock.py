"""A clock the test advances by hand, so a debounce window opens and closes when the test says."""

from __future__ import annotations

import asyncio


class ManualClock:
    """``now()`` moves only with ``advance()``; ``sleep()`` returns once the clock has passed its end."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.time + seconds, fut))
        await fut

    @property
    def sleeping(self) -> int:
        return sum(1 for _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move the clock, wake every sleeper whose end it passed, and let them run."""
        self.time += seconds
        for end, fut in self._sleepers:
            if end <= self.time + 1e-9 and not fut.done():
                fut.set_result(None)
        self._sleepers = [(e, f) for e, f in self._sleepers if not f.done()]
        await settle()


async def settle() -> None:
    """Let every ready task run until it waits again (no I/O is involved)."""
    for _ in range(50):
        await asyncio.sleep(0)
