"""A service's traffic policy and gray release for Istio: DestinationRule and VirtualService.

What xdscp gives Envoy in the Cluster and the route, an Istio or Higress that follows
xdscp over MCP gets in these, for the ServiceEntry host (docs/istio-higress.md):

* a DestinationRule for every service: the load-balancing policy (a consistent hash on
  the service's hash header, else the client address, for RING_HASH and MAGLEV), the
  connect timeout, the outlier detection (with ``min_health_percent`` = the panic
  threshold), and with a gray release the subsets ``stable`` and ``canary``, selected
  by the gray key's label (ServiceEntry endpoints carry instance metadata as labels);
* a VirtualService for a service with a gray release: requests carrying the header go
  to ``canary``; the others are split ``100 - canary_weight`` / ``canary_weight``.

A gray key or value that is not a valid Kubernetes label cannot select endpoints in
Istio (their labels leave it out): the service is then served without subsets and
without a VirtualService, and the reason is logged.
"""

from __future__ import annotations

import logging

from xdscp.cache.resource import Resource
from xdscp.istio_api.networking.v1alpha3 import destination_rule_pb2, virtual_service_pb2
from xdscp.logfmt import log_event
from xdscp.model.service import GrayRelease, LbPolicy, Service, ServiceKey
from xdscp.translation.mcp_resources import mcp_resource
from xdscp.translation.protobuf_helpers import duration
from xdscp.translation.service_entries import McpSettings, is_label, istio_host
from xdscp.type_urls import DESTINATION_RULE, VIRTUAL_SERVICE

log = logging.getLogger(__name__)

LB = destination_rule_pb2.LoadBalancerSettings
_SIMPLE = {
    LbPolicy.ROUND_ROBIN: LB.ROUND_ROBIN,
    LbPolicy.LEAST_REQUEST: LB.LEAST_REQUEST,
    LbPolicy.RANDOM: LB.RANDOM,
}
STABLE, CANARY = "stable", "canary"  # subset names: DNS labels whatever the gray values are


def build_traffic_rules(key: ServiceKey, svc: Service, settings: McpSettings) -> list[Resource]:
    """The service's DestinationRule, and its VirtualService when it has a gray release."""
    host = istio_host(key, settings.host_suffix)
    gray = svc.gray if svc.gray is not None and _gray_selects(key, svc.gray) else None
    rules = [mcp_resource(DESTINATION_RULE, settings.namespace, host, _destination_rule(host, svc, gray), key)]
    if gray is not None:
        rules.append(mcp_resource(VIRTUAL_SERVICE, settings.namespace, host, _virtual_service(host, gray), key))
    return rules


def _destination_rule(host: str, svc: Service, gray: GrayRelease | None) -> destination_rule_pb2.DestinationRule:
    dr = destination_rule_pb2.DestinationRule(host=host)
    policy = dr.traffic_policy
    if svc.lb_policy in _SIMPLE:
        policy.load_balancer.simple = _SIMPLE[svc.lb_policy]
    else:
        ch = policy.load_balancer.consistent_hash
        if svc.hash_policy is not None and svc.hash_policy.header:
            ch.http_header_name = svc.hash_policy.header.lower()
        else:
            ch.use_source_ip = True
        if svc.lb_policy == LbPolicy.MAGLEV:
            ch.maglev.SetInParent()
        else:
            ch.ring_hash.SetInParent()
    policy.connection_pool.tcp.connect_timeout.CopyFrom(duration(svc.connect_timeout))
    od = svc.outlier_detection
    if od is not None:
        out = policy.outlier_detection
        out.consecutive_5xx_errors.value = od.consecutive_5xx
        if od.consecutive_gateway_failure is not None:
            out.consecutive_gateway_errors.value = od.consecutive_gateway_failure
        out.interval.CopyFrom(duration(od.interval))
        out.base_ejection_time.CopyFrom(duration(od.base_ejection_time))
        out.max_ejection_percent = od.max_ejection_percent
        out.min_health_percent = int(svc.panic_threshold)  # Istio's panic threshold
    if gray is not None:
        for name, value in ((STABLE, gray.stable), (CANARY, gray.canary)):
            dr.subsets.add(name=name).labels[gray.key] = value
    return dr


def _virtual_service(host: str, gray: GrayRelease) -> virtual_service_pb2.VirtualService:
    vs = virtual_service_pb2.VirtualService(hosts=[host])
    if gray.header is not None:
        canary = vs.http.add(name="canary-header")
        header = canary.match.add().headers[gray.header.lower()]  # Istio wants header names in lowercase
        if gray.header_value is not None:
            header.exact = gray.header_value
        # else left empty: Istio matches any request that carries the header
        canary.route.add().destination.CopyFrom(virtual_service_pb2.Destination(host=host, subset=CANARY))
    split = vs.http.add(name="split")
    for subset, weight in ((STABLE, 100 - gray.canary_weight), (CANARY, gray.canary_weight)):
        if weight:
            route = split.route.add(weight=weight)
            route.destination.host, route.destination.subset = host, subset
    return vs


def _gray_selects(key: ServiceKey, gray: GrayRelease) -> bool:
    if is_label(gray.key, gray.stable) and is_label(gray.key, gray.canary):
        return True
    log_event(log, logging.WARNING, "translation.istio_gray_skipped", service=repr(key), key=gray.key,
              stable=gray.stable, canary=gray.canary,
              reason="the gray key or a value is not a valid Kubernetes label, so Istio subsets cannot select it")
    return False
