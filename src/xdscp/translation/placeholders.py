"""Empty stand-ins for EDS/RDS names a client asks for that no service provides.

Answering such a name (instead of staying silent) keeps Envoy from leaving a cluster
or listener warming until its init timeout; when the service appears, the real
resource has a different version and replaces the stand-in.
"""

from __future__ import annotations

from functools import lru_cache

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2

from xdscp.cache.resource import Resource
from xdscp.type_urls import ENDPOINT, ROUTE


@lru_cache(maxsize=4096)
def missing_resource(type_url: str, name: str) -> Resource | None:
    """The empty resource served for an unknown name, or None for types that have none."""
    if type_url == ENDPOINT:
        return Resource.of(ENDPOINT, name, endpoint_pb2.ClusterLoadAssignment(cluster_name=name))
    if type_url == ROUTE:
        return Resource.of(ROUTE, name, route_pb2.RouteConfiguration(name=name))
    return None
