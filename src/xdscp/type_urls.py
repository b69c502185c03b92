"""The xDS resource type URLs xdscp serves, and the order ADS pushes them in."""

from __future__ import annotations

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

# MCP-over-xDS (Istio configSources, Higress): a collection's type URL is its Istio
# group/version/kind; every resource in it is an Any holding an istio.mcp.v1alpha1.Resource.
SERVICE_ENTRY = "networking.istio.io/v1alpha3/ServiceEntry"
WORKLOAD_ENTRY = "networking.istio.io/v1alpha3/WorkloadEntry"
MCP_TYPES: tuple[str, ...] = (SERVICE_ENTRY, WORKLOAD_ENTRY)
MCP_RESOURCE = "type.googleapis.com/istio.mcp.v1alpha1.Resource"

# A Cluster goes out before the ClusterLoadAssignment it needs, a Listener before its
# RouteConfiguration, so Envoy warms without waiting on a missing dependency.
PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)

# In SotW, every Listener/Cluster response is the complete set; for the other types a
# response carries only what changed (xDS protocol, "grouping resources into responses").
# Istio's MCP client takes each response as the full state of its collection.
FULL_STATE: frozenset[str] = frozenset({CLUSTER, LISTENER, *MCP_TYPES})

# What a follower process (serve --workers) relays from the owner.
RELAYED_TYPES: tuple[str, ...] = PUSH_ORDER + MCP_TYPES

SHORT_NAMES: dict[str, str] = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds"}


def short(type_url: str) -> str:
    """A short label for logs: cds/eds/lds/rds, or the message name of other types."""
    return SHORT_NAMES.get(type_url) or type_url.rsplit("/", 1)[-1]


def kind_name(type_url: str) -> str:
    """The kind a type URL names: ``Cluster``, ``ClusterLoadAssignment``, ``ServiceEntry``."""
    return type_url.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
