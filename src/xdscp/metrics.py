"""The process's Prometheus metrics, served on the admin server's /metrics."""

from __future__ import annotations

from prometheus_client import Gauge

PROTECT_THRESHOLD_ACTIVE = Gauge(
    "xdscp_protect_threshold_active",
    "1 while a service's healthy share is below its protect threshold and all its instances are served",
    ["cluster"],
)

SOURCE_UP = Gauge(
    "xdscp_source_up",
    "1 when the source's last read of its registry succeeded, 0 while it fails (its last good view is served)",
    ["source"],
)
