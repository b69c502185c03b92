"""Resources served for names a client asks for that the snapshot does not hold.

EDS/RDS: empty stand-ins. Answering such a name (instead of staying silent) keeps Envoy
from leaving a cluster or listener warming until its init timeout; when the service
appears, the real resource has a different version and replaces the stand-in.

LDS: a Listener asked for by name that is not one of Envoy's is a proxyless gRPC
client's target, answered with an api_listener (xdscp.translation.api_listeners).
"""

from __future__ import annotations

from functools import lru_cache

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2

from xdscp.cache.resource import Resource
from xdscp.translation.api_listeners import build_api_listener
from xdscp.type_urls import ENDPOINT, LISTENER, ROUTE


@lru_cache(maxsize=4096)
def missing_resource(type_url: str, name: str) -> Resource | None:
    """The empty resource served for an unknown name, or None for types that have none."""
    if type_url == ENDPOINT:
        return Resource.of(ENDPOINT, name, endpoint_pb2.ClusterLoadAssignment(cluster_name=name))
    if type_url == ROUTE:
        return Resource.of(ROUTE, name, route_pb2.RouteConfiguration(name=name))
    if type_url == LISTENER and name:
        return Resource.of(LISTENER, name, build_api_listener(name))
    return None
