"""Each source's state as operators see it: in /readyz, /debug/sources and ``xdscp_source_up``.

One reading for all three, so they never disagree: a source is *up* when it has loaded
once and its last read succeeded (``last_error`` is None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xdscp.model.registry import Registry
from xdscp.sources.base import Source


@dataclass(frozen=True, slots=True)
class SourceState:
    name: str
    kind: str
    priority: int
    required: bool
    synced: bool  # has loaded once
    last_error: str | None  # why the last read failed; None when it succeeded
    services: int  # the services it contributes now
    last_sync: float | None = None  # Unix time of its last update to the registry

    @property
    def up(self) -> bool:
        return self.synced and self.last_error is None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "priority": self.priority, "required": self.required,
                "synced": self.synced, "up": self.up, "last_error": self.last_error, "services": self.services,
                "last_sync": self.last_sync}


class SourceStates:
    """Reads the state of a control plane's sources (cheap: called per scrape and request)."""

    def __init__(self, sources: Sequence[Source], registry: Registry, priorities: Mapping[str, int],
                 optional: Mapping[str, float]) -> None:
        self.sources = sources
        self.registry = registry
        self.priorities = priorities
        self.optional = optional

    def states(self) -> list[SourceState]:
        return [SourceState(s.name, s.kind, self.priorities.get(s.name, 0), s.name not in self.optional,
                            self.registry.is_synced(s.name), s.last_error,
                            len(self.registry.source_services(s.name)), self.registry.last_sync(s.name))
                for s in self.sources]

    def up(self) -> dict[str, bool]:
        """source name -> up, for the ``xdscp_source_up`` gauge."""
        return {st.name: st.up for st in self.states()}
