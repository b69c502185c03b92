"""The contract every registry source keeps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from xdscp.credentials import Credentials
from xdscp.model.registry import Registry
from xdscp.server.tls import TlsSettings

_READ_POLL = 0.02  # seconds between looks at a read under way (xdscp validate only)


@dataclass(frozen=True, slots=True)
class AdminBinding:
    """Where the admin address was bound, for a source that serves ports beside it."""

    host: str
    port: int
    credentials: Credentials  # who may read and write what the source serves
    tls: TlsSettings | None = None  # the admin address's certificate, for ports that follow it


class Source(Protocol):
    """Watches one registry and applies what it sees to the Registry under its own name.

    ``run`` never returns while the control plane is up and never raises for bad
    registry data: it logs the problem and keeps the last good view in force.
    """

    name: str
    kind: str

    @property
    def last_error(self) -> str | None:
        """Why the last read was rejected (shown by /readyz); None when fine."""
        ...

    async def run(self, registry: Registry) -> None: ...

    @property
    def reads_network(self) -> bool:
        """Whether reading the registry means reaching a server (``xdscp validate --offline``
        skips those)."""
        ...

    async def read_once(self, registry: Registry) -> None:
        """Read the registry once into ``registry`` and return: synced there, or ``last_error``
        set. Writes nothing anywhere (``xdscp validate``); the caller bounds the time."""
        ...

    def close(self) -> None:
        """Release files and connections; called once, after ``run`` has been cancelled."""
        ...

    def routes(self) -> list[web.RouteDef]:
        """HTTP routes the source serves on the admin address (a registry of its own has its
        APIs here); the admin address's write token and read-only rules apply to them."""
        ...

    async def open_ports(self, admin: AdminBinding) -> None:
        """Bind the ports the source serves of its own (after the admin address is bound);
        BindError if one cannot be."""
        ...

    async def close_ports(self, grace: float) -> None:
        """Stop serving them, ending their connections within ``grace`` seconds."""
        ...


class WatchingSource:
    """A source that only watches a registry: it serves nothing on the admin address, and
    watching writes nothing, so one read is its watch run until it loads or fails."""

    name: str

    @property
    def last_error(self) -> str | None:
        raise NotImplementedError

    async def run(self, registry: Registry) -> None:
        raise NotImplementedError

    async def read_once(self, registry: Registry) -> None:
        watch = asyncio.ensure_future(self.run(registry))
        try:
            while not (registry.is_synced(self.name) or self.last_error is not None or watch.done()):
                await asyncio.sleep(_READ_POLL)
            if watch.done():
                watch.result()  # run() never returns while it works: say why it did
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    def routes(self) -> list[web.RouteDef]:
        return []

    async def open_ports(self, admin: AdminBinding) -> None:
        return None

    async def close_ports(self, grace: float) -> None:
        return None
