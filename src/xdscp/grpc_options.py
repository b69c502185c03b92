"""The keep-alive policy and call admission of every xdscp gRPC port (xDS, the Nacos face)."""

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

# grpc.aio accepts new calls one at a time. When thousands of clients reconnect at once (a
# restart, a failover), gRPC core queues the calls it has not handed over yet and, past
# 1,000 queued (soft) to 3,000 (hard), cancels them at random: the reconnect storm then
# repeats with backoff. A queued call costs little; accept them.
PENDING_CALLS_LIMIT = 1_000_000
ACCEPT_STORMS = [
    ("grpc.server.max_pending_requests", PENDING_CALLS_LIMIT),
    ("grpc.server.max_pending_requests_hard_limit", PENDING_CALLS_LIMIT),
]
