"""The HTTP ingress Listener: an HttpConnectionManager fetching its routes over RDS/ADS.

On demand, the on_demand filter runs before the router: a request whose Host has no
virtual host yet asks for it (VHDS), and one whose route's cluster Envoy does not hold
asks for that cluster (on-demand CDS), both over the same config source."""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.on_demand.v3 import on_demand_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from xdscp.translation.protobuf_helpers import duration, pack


def build_listener(name: str, address: str, port: int, route_config_name: str,
                   rds_source: config_source_pb2.ConfigSource, on_demand: bool,
                   on_demand_timeout: float) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=name, codec_type=hcm_pb2.HttpConnectionManager.AUTO)
    hcm.rds.route_config_name = route_config_name
    hcm.rds.config_source.CopyFrom(rds_source)
    if on_demand:
        config = on_demand_pb2.OnDemand()
        config.odcds.source.CopyFrom(rds_source)
        config.odcds.timeout.CopyFrom(duration(on_demand_timeout))
        hcm.http_filters.add(name="envoy.filters.http.on_demand").typed_config.CopyFrom(pack(config))
    router = hcm.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.CopyFrom(pack(router_pb2.Router()))

    listener = listener_pb2.Listener(name=name)
    sa = listener.address.socket_address
    sa.address = address
    sa.port_value = port
    chain = listener.filter_chains.add()
    chain.filters.add(name="envoy.filters.network.http_connection_manager").typed_config.CopyFrom(pack(hcm))
    return listener
