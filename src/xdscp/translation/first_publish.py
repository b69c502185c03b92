"""When the first snapshot may go out: which sources it waits for, and for how long.

A snapshot published before a source has loaded is a world without that source's
services: Envoys that still hold them (xdscp restarted, or another replica served
them) would be told to drop them. So the first snapshot waits for every *required*
source, however long that takes. An *optional* source (``required: false``) is waited
for only its ``startup_grace`` seconds; after that the others are published without
it, and its services join when it loads.
"""

from __future__ import annotations

from collections.abc import Mapping

from xdscp.model.registry import Registry


class FirstPublish:
    """The rule above for one registry's sources, with the grace of each optional source
    (every other source is required), counted from ``started`` (clock time)."""

    def __init__(self, registry: Registry, optional: Mapping[str, float], started: float) -> None:
        self.registry = registry
        unknown = set(optional) - set(registry.sources)
        if unknown:
            raise KeyError(f"unknown sources {sorted(unknown)}")
        self.ends = {name: started + grace for name, grace in optional.items()}

    def missing(self) -> list[str]:
        """The sources that have not loaded yet, in config order."""
        return [s for s in self.registry.sources if not self.registry.is_synced(s)]

    def blocking(self, now: float) -> list[str]:
        """The sources the first snapshot still waits for at ``now``: not loaded, and
        required or within their grace."""
        return [s for s in self.missing() if now < self.ends.get(s, float("inf"))]

    def seconds_left(self, now: float) -> float | None:
        """Until the next grace runs out among the optional sources not loaded (None: no
        grace is running, so only a source loading can change the answer)."""
        ends = [end for s in self.missing() if now < (end := self.ends.get(s, float("inf"))) < float("inf")]
        return min(ends) - now if ends else None
