"""Where served Clusters and Listeners tell Envoy to fetch their EDS and RDS from."""

from __future__ import annotations

from typing import Literal

from envoy.config.core.v3 import config_source_pb2

ConfigSourceMode = Literal["ads", "grpc", "delta_grpc", "rest"]

_API_TYPE = {
    "grpc": config_source_pb2.ApiConfigSource.GRPC,
    "delta_grpc": config_source_pb2.ApiConfigSource.DELTA_GRPC,
}


def build_config_source(mode: ConfigSourceMode, xds_cluster: str,
                        refresh_delay: float) -> config_source_pb2.ConfigSource:
    """``ads``: over the same ADS stream. ``grpc``/``delta_grpc``: a per-type stream to the
    bootstrap's static cluster ``xds_cluster`` (Envoy 1.40 rejects ``self`` sources).
    ``rest``: polled every ``refresh_delay`` seconds from ``xds_cluster`` (REST-JSON)."""
    cs = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    if mode == "ads":
        cs.ads.SetInParent()
        return cs
    api = cs.api_config_source
    api.transport_api_version = config_source_pb2.V3
    if mode == "rest":
        api.api_type = config_source_pb2.ApiConfigSource.REST
        api.cluster_names.append(xds_cluster)
        api.refresh_delay.FromMilliseconds(round(refresh_delay * 1000))
        return cs
    api.api_type = _API_TYPE[mode]
    api.grpc_services.add().envoy_grpc.cluster_name = xds_cluster
    return cs
