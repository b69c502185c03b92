"""What a stream runs in, without gRPC: a cache, a grouper and a tracker, with the default
limits and the observing callbacks, for tests that drive the protocol state machines."""

from __future__ import annotations

from xdscp.cache.cache import SnapshotCache
from xdscp.cache.node_group import node_grouper
from xdscp.config import XdsLimitsConfig
from xdscp.runtime_settings import stream_limits
from xdscp.server.callbacks import ObservedStreams
from xdscp.server.stream import ServerEnv
from xdscp.server.tracker import StreamTracker
from xdscp.translation.placeholders import missing_resource


def server_env() -> ServerEnv:
    return ServerEnv(SnapshotCache(), node_grouper("cluster"), StreamTracker(), missing_resource,
                     stream_limits(XdsLimitsConfig()), ObservedStreams())
