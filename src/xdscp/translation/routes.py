"""Services -> one RouteConfiguration with a virtual host per service, matched on Host.

A gray release becomes a header route to the canary subset and a weighted split of
the rest between the stable and canary subsets (Envoy subset load balancing)."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2

from xdscp.cache import wire
from xdscp.model.service import LbPolicy, Service
from xdscp.translation.endpoints import ENDPOINT_METADATA_NAMESPACE
from xdscp.translation.protobuf_helpers import string_struct

_RC_NAME, _RC_VIRTUAL_HOSTS = 1, 2  # RouteConfiguration fields


def build_virtual_host(name: str, svc: Service) -> route_components_pb2.VirtualHost:
    """``Host: <name>`` and ``<name>:<any port>`` route to the service's cluster (to its
    canary and stable subsets when a gray release is configured)."""
    vh = route_components_pb2.VirtualHost(name=name, domains=[name, f"{name}:*"])
    gray = svc.gray
    if gray is not None and gray.header is not None:
        canary = vh.routes.add()
        canary.match.prefix = "/"
        hm = canary.match.headers.add(name=gray.header)
        if gray.header_value is None:
            hm.present_match = True
        else:
            hm.string_match.exact = gray.header_value
        canary.route.cluster = name
        _subset(canary.route.metadata_match, gray.key, gray.canary)
        _hash(canary.route, svc)
    route = vh.routes.add()
    route.match.prefix = "/"
    if gray is None:
        route.route.cluster = name
    elif gray.canary_weight == 0:
        route.route.cluster = name
        _subset(route.route.metadata_match, gray.key, gray.stable)
    else:
        for value, weight in ((gray.stable, 100 - gray.canary_weight), (gray.canary, gray.canary_weight)):
            if weight:
                cw = route.route.weighted_clusters.clusters.add(name=name)
                cw.weight.value = weight
                _subset(cw.metadata_match, gray.key, value)
    _hash(route.route, svc)
    return vh


def _subset(match: base_pb2.Metadata, key: str, value: str) -> None:
    match.filter_metadata[ENDPOINT_METADATA_NAMESPACE].CopyFrom(string_struct({key: value}))


def _hash(action: route_components_pb2.RouteAction, svc: Service) -> None:
    if svc.lb_policy in (LbPolicy.RING_HASH, LbPolicy.MAGLEV):
        hp = action.hash_policy.add()
        if svc.hash_policy is not None and svc.hash_policy.header:
            hp.header.header_name = svc.hash_policy.header
        else:
            hp.connection_properties.source_ip = True


def route_configuration_payload(name: str, virtual_hosts: Iterable[bytes]) -> bytes:
    """A RouteConfiguration serialized from its already serialized virtual hosts (in the
    order given): the bytes the RouteConfiguration message would serialize to, without
    keeping a message per virtual host."""
    return wire.string_field(_RC_NAME, name) + b"".join(wire.field(_RC_VIRTUAL_HOSTS, vh) for vh in virtual_hosts)


def vhds_name(route_config_name: str, host: str) -> str:
    """A virtual host's VHDS resource name: ``<route configuration>/<host>``."""
    return f"{route_config_name}/{host}"


def build_vhds_route_configuration(name: str, source: config_source_pb2.ConfigSource) -> route_pb2.RouteConfiguration:
    """On demand: no virtual hosts of its own; Envoy asks for each by Host (VHDS)."""
    rc = route_pb2.RouteConfiguration(name=name)
    rc.vhds.config_source.CopyFrom(source)
    return rc


def build_vhds_virtual_host(route_config_name: str, name: str, svc: Service) -> route_components_pb2.VirtualHost:
    """The service's virtual host as VHDS serves it: named ``<route configuration>/<service>``."""
    vh = build_virtual_host(name, svc)
    vh.name = vhds_name(route_config_name, name)
    return vh
