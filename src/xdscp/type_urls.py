"""The xDS resource type URLs xdscp serves, and the order ADS pushes them in."""

from __future__ import annotations

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

# A Cluster goes out before the ClusterLoadAssignment it needs, a Listener before its
# RouteConfiguration, so Envoy warms without waiting on a missing dependency.
PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)

# In SotW, every Listener/Cluster response is the complete set; for the other types a
# response carries only what changed (xDS protocol, "grouping resources into responses").
FULL_STATE: frozenset[str] = frozenset({CLUSTER, LISTENER})

SHORT_NAMES: dict[str, str] = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds"}


def short(type_url: str) -> str:
    """A short label for logs: cds/eds/lds/rds, or the message name of other types."""
    return SHORT_NAMES.get(type_url) or type_url.rsplit("/", 1)[-1]
