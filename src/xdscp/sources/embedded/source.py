"""The embedded source: loads the store, expires silent ephemeral instances, checks persistent ones."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from xdscp.model.registry import Registry
from xdscp.sources.embedded.checks import CheckSettings, InstanceChecker
from xdscp.sources.embedded.database import RegistryDatabase
from xdscp.sources.embedded.store import EmbeddedStore


@dataclass(frozen=True, slots=True)
class EmbeddedSettings:
    database: Path | None  # None: nothing survives a restart
    heartbeat_unhealthy_after: float = 15.0
    heartbeat_remove_after: float = 30.0
    expiry_interval: float = 0.5
    checks: CheckSettings | None = CheckSettings()  # None: persistent instances are not probed


class EmbeddedSource:
    """``kind: embedded``; its store is what the registration APIs write to."""

    kind = "embedded"
    last_error: str | None = None  # its input is validated per API call, never rejected whole

    def __init__(self, name: str, settings: EmbeddedSettings) -> None:
        self.name = name
        self.settings = settings
        db = RegistryDatabase(settings.database) if settings.database is not None else None
        self.store = EmbeddedStore(name, db)

    def check(self) -> list[str]:
        return []  # the database was opened (and its schema checked) in __init__

    def close(self) -> None:
        self.store.close()

    async def run(self, registry: Registry) -> None:
        self.store.bind(registry)
        tasks = [self._expire_forever()]
        if self.settings.checks is not None:
            tasks.append(InstanceChecker(self.store, self.settings.checks).run())
        await asyncio.gather(*tasks)

    async def _expire_forever(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(s.expiry_interval)
            self.store.expire(s.heartbeat_unhealthy_after, s.heartbeat_remove_after)
