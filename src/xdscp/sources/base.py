"""The contract every registry source keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from xdscp.admin.credentials import Credentials
from xdscp.model.registry import Registry


@dataclass(frozen=True, slots=True)
class AdminBinding:
    """Where the admin address was bound, for a source that serves ports beside it."""

    host: str
    port: int
    credentials: Credentials  # who may read and write what the source serves


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

    def check(self) -> list[str]:
        """Problems a one-off read of the registry finds now (for ``xdscp validate``)."""
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
    """A source that only watches a registry: it serves nothing on the admin address."""

    def routes(self) -> list[web.RouteDef]:
        return []

    async def open_ports(self, admin: AdminBinding) -> None:
        return None

    async def close_ports(self, grace: float) -> None:
        return None
