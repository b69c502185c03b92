"""One type's subscription on one stream: what SotW and Delta streams both keep, its
protocol status (sent, ACKed, NACKed), and how that status reads (in sync, pending, NACKed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xdscp.cache.snapshot import TypeSnapshot
from xdscp.server.names_pool import EMPTY


@dataclass(slots=True)
class TypeStatus:
    """What a stream has been sent and has acknowledged for one type URL."""

    version_sent: str = ""
    nonce_sent: str = ""
    version_acked: str = ""  # what the client holds: its last ACK, or the version a NACK says it kept
    last_nack: str | None = None
    last_nack_version: str | None = None
    responses: int = 0
    acks: int = 0
    nacks: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "version_sent": self.version_sent,
            "nonce_sent": self.nonce_sent,
            "version_acked": self.version_acked,
            "last_nack": self.last_nack,
            "last_nack_version": self.last_nack_version,
            "responses": self.responses,
            "acks": self.acks,
            "nacks": self.nacks,
        }


def stands_nacked(status: dict[str, Any]) -> bool:
    """Whether a type's last response is rejected: its last NACK was of the version sent last
    (``status``: ``TypeStatus.as_json()``)."""
    return bool(status["last_nack"]) and status["last_nack_version"] == status["version_sent"]


def sync_state(status: dict[str, Any], current: str) -> str:
    """``NACKed``, ``in sync`` (it holds ``current``, the version it is to be served now) or
    ``pending`` (sent or about to be, not ACKed yet), as istioctl proxy-status says."""
    if stands_nacked(status):
        return "NACKed"
    return "in sync" if status["version_acked"] == current else "pending"


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
