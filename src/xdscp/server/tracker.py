"""Connected streams and their per-type protocol state, for /debug/nodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xdscp.server.stream import Stream


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


class StreamTracker:
    """The set of open streams; cheap to update, read only by the admin server."""

    def __init__(self) -> None:
        self._streams: dict[int, Stream] = {}

    def add(self, stream: Stream) -> None:
        self._streams[stream.id] = stream

    def remove(self, stream: Stream) -> None:
        self._streams.pop(stream.id, None)

    def __len__(self) -> int:
        return len(self._streams)

    def wake_all(self) -> None:
        """Wake every stream (at shutdown, so each sees the flag and ends)."""
        for stream in self._streams.values():
            stream.wake.set()

    def count_cluster(self, cluster: str) -> int:
        """Open streams whose node says ``cluster`` (e.g. the workers' relays)."""
        return sum(1 for s in self._streams.values() if s.node is not None and s.node.cluster == cluster)

    def groups(self) -> list[str]:
        """The node groups of the open streams."""
        return sorted({s.group for s in self._streams.values() if s.group is not None})

    def nodes(self) -> list[dict[str, Any]]:
        """One entry per open stream, grouped by nothing: a node may hold several streams."""
        out = []
        for s in sorted(self._streams.values(), key=lambda s: (s.node_id, s.id)):
            out.append(
                {
                    "node_id": s.node_id,
                    "cluster": s.node.cluster if s.node is not None else "",
                    "group": s.group,
                    "locality": str(s.view) if s.view is not None else None,
                    "stream": s.id,
                    "transport": s.transport,
                    "peer": s.peer,
                    "connected_since": s.opened_at,
                    "types": {url: st.as_json() for url, st in s.statuses().items()},
                }
            )
        return out
