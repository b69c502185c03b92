"""Waiting for a condition, never for a length of time: a test's verdict must not depend
on the machine's speed, so it polls until the condition holds, with a generous timeout."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Call ``check()`` until it returns something truthy (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, AssertionError, KeyError) as e:
            last = e
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")


async def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Call ``check()`` (awaiting it if it is a coroutine) until it returns something truthy;
    fail after ``timeout`` seconds. The event loop runs between calls."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")
