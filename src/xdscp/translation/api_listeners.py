"""Listeners for proxyless gRPC clients (grpcio's and grpc-js's ``xds:///<name>`` targets).

Such a client asks LDS for exactly the target's name, and wants a Listener of that name
whose ``api_listener`` is an HttpConnectionManager (with the router filter, or it NACKs)
routing to a cluster. xdscp answers any such name with an inline route to the cluster of
the same name, so ``xds:///echo`` reaches service ``echo`` and ``xds:///orders.payments.prod``
the service ``orders`` in group ``payments`` of namespace ``prod`` (see "Naming rule").
The Listener depends on the name only, so it never changes; Envoy's wildcard LDS request
never gets it (it is served by name only, like a placeholder).
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from xdscp.translation.protobuf_helpers import pack


def build_api_listener(name: str) -> listener_pb2.Listener:
    """The Listener a gRPC client resolving ``xds:///<name>`` needs."""
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    vhost = hcm.route_config.virtual_hosts.add(name=name, domains=["*"])
    route = vhost.routes.add()
    route.match.prefix = ""
    route.route.cluster = name
    router = hcm.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.CopyFrom(pack(router_pb2.Router()))
    listener = listener_pb2.Listener(name=name)
    listener.api_listener.api_listener.CopyFrom(pack(hcm))
    return listener
