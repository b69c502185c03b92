"""The open streams: the server's own state, behind the stream limit, the shutdown drain
and /debug/nodes. Streams add and remove themselves (Stream.serve)."""

from __future__ import annotations

from typing import Any

from xdscp.server.stream_info import StreamInfo


class StreamTracker:
    """The set of open streams; cheap to update, read only by the admin server."""

    def __init__(self) -> None:
        self._streams: dict[int, StreamInfo] = {}

    def add(self, stream: StreamInfo) -> None:
        self._streams[stream.id] = stream

    def remove(self, stream: StreamInfo) -> None:
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
