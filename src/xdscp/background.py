"""Long-running asyncio tasks: keep them alive through bugs, and stop them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger("xdscp")


async def supervised(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Keep a long-running task alive: a bug in one source must not stop the others."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task crashed, restarting in 1s", extra={"xdscp_fields": {"task": name}})
            await asyncio.sleep(1.0)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel every task, then wait until each has finished unwinding."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
