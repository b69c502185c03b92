"""Real servers on loopback for a test to route to or read from: HTTP upstreams that answer
their name, and an aiohttp app standing in for a registry's HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from aiohttp import web

from xdscp.local.upstream import NamedUpstream


@contextmanager
def running_upstreams(*names: str) -> Iterator[list[NamedUpstream]]:
    """Real HTTP upstreams on loopback, each answering its name; stopped on exit."""
    ups = [NamedUpstream(n).start() for n in names]
    try:
        yield ups
    finally:
        for u in ups:
            u.stop()


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app (a test double of a registry's HTTP API) on a free loopback port."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
