"""Services -> one RouteConfiguration with a virtual host per service, matched on Host."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.route.v3 import route_components_pb2, route_pb2

from xdscp.model.service import LbPolicy, Service


def build_virtual_host(name: str, svc: Service) -> route_components_pb2.VirtualHost:
    """``Host: <name>`` and ``<name>:<any port>`` route everything to the service's cluster."""
    vh = route_components_pb2.VirtualHost(name=name, domains=[name, f"{name}:*"])
    route = vh.routes.add()
    route.match.prefix = "/"
    route.route.cluster = name
    if svc.lb_policy in (LbPolicy.RING_HASH, LbPolicy.MAGLEV):
        hp = route.route.hash_policy.add()
        if svc.hash_policy is not None and svc.hash_policy.header:
            hp.header.header_name = svc.hash_policy.header
        else:
            hp.connection_properties.source_ip = True
    return vh


def build_route_configuration(
    name: str, virtual_hosts: Iterable[route_components_pb2.VirtualHost]
) -> route_pb2.RouteConfiguration:
    rc = route_pb2.RouteConfiguration(name=name)
    rc.virtual_hosts.extend(sorted(virtual_hosts, key=lambda vh: vh.name))
    return rc
