"""One type's subscription on one stream: what SotW and Delta streams both keep."""

from __future__ import annotations

from dataclasses import dataclass, field

from xdscp.cache.snapshot import TypeSnapshot
from xdscp.server.names_pool import EMPTY
from xdscp.server.tracker import TypeStatus


@dataclass(slots=True)
class Subscription:
    """Whether the client asked for the type, for which names (or everything), what it
    was last answered, and under which nonce. Each protocol adds what only it tracks."""

    status: TypeStatus = field(default_factory=TypeStatus)
    requested: bool = False
    wildcard: bool = False
    names: frozenset[str] = EMPTY  # pooled: shared by every stream with this subscription
    # The TypeSnapshot last answered: one shared reference per stream instead of a
    # name -> version map of what the client holds.
    held: TypeSnapshot | None = None
    nonce: str | None = None  # of the last response
