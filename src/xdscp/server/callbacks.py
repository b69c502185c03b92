"""What the protocol code tells the rest of xdscp about its streams, as callbacks.

The SotW and Delta streams call these at each step (opened, node bound, type added,
response, ACK, NACK, push, closed) and keep no metrics, logs or registry of streams
themselves. ``StreamCallbacks`` does nothing; ``ObservedStreams`` counts (Prometheus) and
logs (one event a line). The StreamTracker (the stream limit, the drain, /debug/nodes) is
the server's own state: streams add and remove themselves there, not through a callback.
"""

from __future__ import annotations

import logging

from xdscp.logfmt import log_event
from xdscp.metrics import ACKS, NACKS, PUSH_LATENCY, RESPONSES, STREAM_TYPES, STREAMS, per_type
from xdscp.server.stream_info import StreamInfo

log = logging.getLogger("xdscp.server")


class StreamCallbacks:
    """Every hook, doing nothing: a base to override, and a fake for protocol tests."""

    def opened(self, stream: StreamInfo) -> None: ...

    def node_bound(self, stream: StreamInfo) -> None: ...

    def type_added(self, stream: StreamInfo, type_url: str) -> None: ...

    def responded(self, stream: StreamInfo, type_url: str, version: str, nonce: str, resources: int,
                  removed: int) -> None: ...

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None: ...

    def nacked(self, stream: StreamInfo, type_url: str, rejected: str, kept: str, nonce: str, error: str,
               repeated: bool) -> None:
        """``repeated``: the same error for the same version as the NACK before."""

    def pushed(self, stream: StreamInfo, latency: float) -> None:
        """A registry change reached a stream served before, ``latency`` seconds after it."""

    def closed(self, stream: StreamInfo) -> None: ...


class ObservedStreams(StreamCallbacks):
    """Metrics and structured logs."""

    def opened(self, stream: StreamInfo) -> None:
        STREAMS.labels(stream.transport).inc()

    def node_bound(self, stream: StreamInfo) -> None:
        log_event(log, logging.INFO, "stream.open", node=stream.node_id, group=stream.group,
                  transport=stream.transport, stream=stream.id, peer=stream.peer)

    def type_added(self, stream: StreamInfo, type_url: str) -> None:
        per_type(STREAM_TYPES, type_url, stream.transport).inc()

    def responded(self, stream: StreamInfo, type_url: str, version: str, nonce: str, resources: int,
                  removed: int) -> None:
        per_type(RESPONSES, type_url, stream.transport).inc()
        log_event(log, logging.DEBUG, "xds.response", node=stream.node_id, type=type_url, version=version,
                  nonce=nonce, resources=resources, removed=removed, stream=stream.id)

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None:
        per_type(ACKS, type_url, stream.transport).inc()
        log_event(log, logging.DEBUG, "xds.ack", node=stream.node_id, type=type_url, version=version,
                  nonce=nonce, stream=stream.id)

    def nacked(self, stream: StreamInfo, type_url: str, rejected: str, kept: str, nonce: str, error: str,
               repeated: bool) -> None:
        per_type(NACKS, type_url, stream.transport).inc()
        if not repeated:  # each NACK is logged once per version and error
            log_event(log, logging.WARNING, "xds.nack", node=stream.node_id, type=type_url,
                      rejected_version=rejected, kept_version=kept, nonce=nonce, stream=stream.id, error=error)

    def pushed(self, stream: StreamInfo, latency: float) -> None:
        PUSH_LATENCY.observe(latency)

    def closed(self, stream: StreamInfo) -> None:
        STREAMS.labels(stream.transport).dec()
        for type_url in stream.types:
            per_type(STREAM_TYPES, type_url, stream.transport).dec()
        log_event(log, logging.INFO, "stream.close", node=stream.node_id, transport=stream.transport,
                  stream=stream.id)
