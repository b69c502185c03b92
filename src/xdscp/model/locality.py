"""Where a node or an instance runs (region and zone), and how far apart two such places are."""

from __future__ import annotations

from dataclasses import dataclass

# Distances, in failover order: a node's traffic stays at the nearest level that can take it.
SAME_ZONE, SAME_REGION, OTHER_REGION = 0, 1, 2


@dataclass(frozen=True, slots=True, order=True)
class Locality:
    """A node's place. Nodes in one locality are served the same bytes."""

    region: str
    zone: str

    def distance(self, region: str, zone: str) -> int:
        """How far an instance in ``region``/``zone`` is from here: SAME_ZONE, SAME_REGION or OTHER_REGION."""
        if region != self.region:
            return OTHER_REGION
        return SAME_ZONE if zone == self.zone else SAME_REGION

    def __str__(self) -> str:
        return f"{self.region}/{self.zone}"
