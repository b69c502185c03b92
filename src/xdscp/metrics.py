"""The process's Prometheus metrics, served on the admin server's /metrics.

Labels carry only bounded values: type URLs are reduced to ``type_label`` (cds, eds, lds,
rds, the Istio collections, or ``other``), since clients choose type URLs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from xdscp.type_urls import MCP_TYPES, PUSH_ORDER, canonical, short

_KNOWN = frozenset(PUSH_ORDER) | frozenset(MCP_TYPES)


def type_label(type_url: str) -> str:
    """A bounded label for a type URL (an Istio kind's, whatever version it was asked by)."""
    url = canonical(type_url)
    return short(url) if url in _KNOWN else "other"


@lru_cache(maxsize=512)
def per_type(metric: Any, type_url: str, transport: str) -> Any:
    """``metric``'s child for (type, transport), looked up once: responses are counted on the
    fan-out path, where ``labels()`` on every call would cost a lock and a dict per stream."""
    return metric.labels(type_label(type_url), transport)


PROTECT_THRESHOLD_ACTIVE = Gauge(
    "xdscp_protect_threshold_active",
    "1 while a service's healthy share is below its protect threshold and all its instances are served",
    ["cluster"],
)

class _SourceUp(Collector):
    """``xdscp_source_up``, read at each scrape from the control planes that report it
    (``observe``), so it says what /readyz says, for every source kind."""

    def __init__(self) -> None:
        self._readers: list[Callable[[], Mapping[str, bool]]] = []

    def observe(self, read: Callable[[], Mapping[str, bool]]) -> None:
        self._readers.append(read)

    def forget(self, read: Callable[[], Mapping[str, bool]]) -> None:
        self._readers = [r for r in self._readers if r != read]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "xdscp_source_up", "1 when the source has loaded and its last read of its registry succeeded; "
            "0 before its first load and while reads fail (its last good view is served)", labels=["source"])
        up: dict[str, bool] = {}
        for read in self._readers:
            up.update(read())
        for name, value in up.items():
            family.add_metric([name], 1.0 if value else 0.0)
        yield family


SOURCE_UP = _SourceUp()
REGISTRY.register(SOURCE_UP)

SOURCE_LAST_SYNC = Gauge(
    "xdscp_source_last_sync_timestamp_seconds",
    "Unix time of the source's last successful read or applied change",
    ["source"],
)

STREAMS = Gauge("xdscp_streams", "Open xDS streams", ["transport"])

STREAM_TYPES = Gauge("xdscp_stream_types", "Open xDS streams that have requested a type", ["type", "transport"])

RESPONSES = Counter("xdscp_responses_total", "xDS responses sent", ["type", "transport"])

ACKS = Counter("xdscp_acks_total", "xDS responses acknowledged (ACK)", ["type", "transport"])

NACKS = Counter("xdscp_nacks_total", "xDS responses rejected by the client (NACK)", ["type", "transport"])

REJECTED_REQUESTS = Counter(
    "xdscp_rejected_requests_total",
    "Requests refused as breaking the protocol (the stream is ended with INVALID_ARGUMENT, or REST answers 4xx)",
    ["reason"],
)

PUSH_LATENCY = Histogram(
    "xdscp_push_latency_seconds",
    "From a registry change to each stream writing the responses that carry it",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

SNAPSHOT_BUILD = Histogram(
    "xdscp_snapshot_build_seconds",
    "Translating the changed services into a new snapshot",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

SNAPSHOTS_PUBLISHED = Counter("xdscp_snapshots_published_total", "Snapshots published to the cache")

RESOURCES = Gauge("xdscp_resources", "Resources in the last published snapshot", ["type"])

LOCALITIES = Gauge("xdscp_localities", "Node localities served assignments of their own (views open)")

DEBOUNCE_MERGED = Counter(
    "xdscp_debounce_merged_changes_total",
    "Service changes that arrived during the debounce window and went out in the same push",
)

NACOS_GRPC_REQUESTS = Counter(
    "xdscp_nacos_grpc_requests_total",
    "Requests on the embedded registry's Nacos gRPC face, by type and Nacos error code (0: served)",
    ["type", "code"],
)

NACOS_GRPC_CONNECTIONS = Gauge("xdscp_nacos_grpc_connections", "Nacos SDK connections set up now")

NACOS_GRPC_PUSHES = Counter("xdscp_nacos_grpc_pushes_total", "NotifySubscriberRequest pushes written")
