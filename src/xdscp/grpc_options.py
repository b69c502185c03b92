"""The keep-alive policy of every xdscp gRPC port (xDS, the Nacos face)."""

from __future__ import annotations

# Clients on long-idle streams ping (Envoy's bootstraps every 30 s with connection_keepalive;
# Nacos SDKs by their keep-alive settings); gRPC's default policy would count those pings
# as abuse and send GOAWAY. And the server pings too: a peer that vanished without closing
# (a killed VM, a dropped NAT entry) is noticed within 80 s and its state released.
KEEPALIVE = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
]
