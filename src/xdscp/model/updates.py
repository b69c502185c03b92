"""What a source hands the registry: its full view, or a change to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from xdscp.model.service import Service, ServiceKey


@dataclass(frozen=True, slots=True)
class FullSnapshot:
    """Everything a source knows now; services it no longer lists are gone."""

    services: Mapping[ServiceKey, Service]

    @classmethod
    def of(cls, services: list[Service] | tuple[Service, ...]) -> FullSnapshot:
        return cls({s.key: s for s in services})


@dataclass(frozen=True, slots=True)
class ServiceChange:
    """Services a source added or replaced, and keys it removed."""

    upserted: tuple[Service, ...] = ()
    removed: tuple[ServiceKey, ...] = field(default=())


RegistryUpdate = FullSnapshot | ServiceChange


def changes_between(previous: Mapping[ServiceKey, Service] | None,
                    current: Mapping[ServiceKey, Service]) -> RegistryUpdate:
    """A source's next view as an update: the first whole, later ones as what changed. A
    service kept as the same object (validated once, reused) is not sent again."""
    if previous is None:
        return FullSnapshot(current)
    upserted = tuple(s for k, s in current.items() if previous.get(k) is not s)
    return ServiceChange(upserted=upserted, removed=tuple(k for k in previous if k not in current))
