"""The xDS resource type URLs xdscp serves, and the order ADS pushes them in."""

from __future__ import annotations

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
# VHDS (``listener.on_demand``): one virtual host per service, asked for by Host over Delta.
VIRTUAL_HOST = "type.googleapis.com/envoy.config.route.v3.VirtualHost"

# MCP-over-xDS (Istio configSources, Higress): a collection's type URL is its Istio
# group/version/kind; every resource in it is an Any holding an istio.mcp.v1alpha1.Resource.
# Istio has asked for the networking kinds as v1 since 1.22 (Higress too); older releases
# ask for v1alpha3 or v1beta1. A snapshot holds each kind once, under v1, and a request
# under any of its versions is answered from it (same resources, same versions).
_NETWORKING = "networking.istio.io"
SERVICE_ENTRY = f"{_NETWORKING}/v1/ServiceEntry"
WORKLOAD_ENTRY = f"{_NETWORKING}/v1/WorkloadEntry"
DESTINATION_RULE = f"{_NETWORKING}/v1/DestinationRule"
VIRTUAL_SERVICE = f"{_NETWORKING}/v1/VirtualService"
MCP_TYPES: tuple[str, ...] = (SERVICE_ENTRY, WORKLOAD_ENTRY, DESTINATION_RULE, VIRTUAL_SERVICE)
MCP_RESOURCE = "type.googleapis.com/istio.mcp.v1alpha1.Resource"
ISTIO_NETWORKING_VERSIONS: tuple[str, ...] = ("v1", "v1beta1", "v1alpha3")
MCP_ALIASES: dict[str, str] = {f"{_NETWORKING}/{version}/{t.rsplit('/', 1)[1]}": t
                               for t in MCP_TYPES for version in ISTIO_NETWORKING_VERSIONS}


def canonical(type_url: str) -> str:
    """The type URL a snapshot holds ``type_url``'s resources under (itself, for most)."""
    return MCP_ALIASES.get(type_url, type_url)

# A Cluster goes out before the ClusterLoadAssignment it needs, a Listener before its
# RouteConfiguration, so Envoy warms without waiting on a missing dependency.
PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, VIRTUAL_HOST)

# In SotW, every Listener/Cluster response is the complete set; for the other types a
# response carries only what changed (xDS protocol, "grouping resources into responses").
# Istio's MCP client takes each response as the full state of its collection.
FULL_STATE: frozenset[str] = frozenset({CLUSTER, LISTENER, *MCP_ALIASES})

# What a follower process (serve --workers) relays from the owner.
RELAYED_TYPES: tuple[str, ...] = PUSH_ORDER + MCP_TYPES

SHORT_NAMES: dict[str, str] = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds"}


def short(type_url: str) -> str:
    """A short label for logs: cds/eds/lds/rds, or the message name of other types."""
    return SHORT_NAMES.get(type_url) or type_url.rsplit("/", 1)[-1]


def kind_name(type_url: str) -> str:
    """The kind a type URL names: ``Cluster``, ``ClusterLoadAssignment``, ``ServiceEntry``."""
    return type_url.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
