"""Service instances -> ClusterLoadAssignment, one locality per (priority, region, zone).

Priorities come from the instance's source (a remote source's instances stay behind the
local ones) and, for a node in a locality (``near``), from distance to it after that:
same zone, then same region, then the rest. Envoy and gRPC fail over level by level as
a level's healthy share drops, and come back as it recovers.
"""

from __future__ import annotations

from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from xdscp.model.locality import Locality
from xdscp.model.service import Instance, Service
from xdscp.translation.protobuf_helpers import string_struct

# Registry weights are Nacos-style floats (0..10000, two decimals shown); Envoy wants
# integers >= 1, so weights are scaled by 100 and the ratios between instances survive.
WEIGHT_SCALE = 100
# Envoy's lb subset and metadata matchers look for endpoint metadata here.
ENDPOINT_METADATA_NAMESPACE = "envoy.lb"


def health_status(inst: Instance, protected: bool = False) -> int:
    """DRAINING for drained or zero-weight instances, else UNHEALTHY/HEALTHY from the registry
    (HEALTHY for all while the service's protect threshold is active)."""
    if inst.draining or inst.weight == 0:
        return health_check_pb2.DRAINING
    return health_check_pb2.HEALTHY if inst.healthy or protected else health_check_pb2.UNHEALTHY


def protection_active(svc: Service) -> bool:
    """True when the healthy share of enabled instances is below the protect threshold."""
    if svc.protect_threshold <= 0:
        return False
    enabled = [i for i in svc.instances if i.enabled]
    if not enabled:
        return False
    healthy = sum(1 for i in enabled if i.healthy)
    return healthy / len(enabled) < svc.protect_threshold


def envoy_weight(inst: Instance) -> int:
    return max(1, round(inst.weight * WEIGHT_SCALE))


def build_load_assignment(name: str, svc: Service, near: Locality | None = None) -> endpoint_pb2.ClusterLoadAssignment:
    """Every enabled instance, grouped into localities; no instances -> no endpoints.
    ``near``: the node's locality, to prioritise by distance from it (None: by source only)."""
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    protected = protection_active(svc)
    by_locality: dict[tuple[int, str, str], list[Instance]] = {}
    for inst in svc.instances:
        if inst.enabled:
            by_locality.setdefault((inst.priority, inst.region, inst.zone), []).append(inst)

    def rank(priority: int, region: str, zone: str) -> tuple[int, int]:
        return (priority, near.distance(region, zone) if near is not None else 0)

    # Envoy wants priorities 0..N without gaps: the levels present are numbered in order.
    level = {r: i for i, r in enumerate(sorted({rank(*k) for k in by_locality}))}
    # Sorted so that registry order never changes the content (and so the version).
    for (priority, region, zone) in sorted(by_locality):
        loc = cla.endpoints.add()
        # Always present, with a weight: proxyless gRPC NACKs a locality-less assignment
        # and sends nothing to a locality without a weight. Envoy ignores the weight
        # unless a cluster asks for locality-weighted balancing.
        loc.locality.SetInParent()
        loc.locality.region = region
        loc.locality.zone = zone
        loc.priority = level[rank(priority, region, zone)]
        members = sorted(by_locality[(priority, region, zone)], key=lambda i: (i.host, i.port))
        loc.load_balancing_weight.value = sum(envoy_weight(i) for i in members)
        for inst in members:
            loc.lb_endpoints.append(_lb_endpoint(inst, protected))
    return cla


def _lb_endpoint(inst: Instance, protected: bool) -> endpoint_components_pb2.LbEndpoint:
    ep = endpoint_components_pb2.LbEndpoint(health_status=health_status(inst, protected))
    sa = ep.endpoint.address.socket_address
    sa.address = inst.host
    sa.port_value = inst.port
    ep.load_balancing_weight.value = envoy_weight(inst)
    if inst.metadata:
        ep.metadata.filter_metadata[ENDPOINT_METADATA_NAMESPACE].CopyFrom(string_struct(inst.metadata))
    return ep
