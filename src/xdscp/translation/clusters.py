"""Service -> Cluster (type EDS over ADS)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.type.v3 import range_pb2

from xdscp.model.service import LbPolicy, Service
from xdscp.translation.protobuf_helpers import duration, string_struct

_LB = {
    LbPolicy.ROUND_ROBIN: cluster_pb2.Cluster.ROUND_ROBIN,
    LbPolicy.LEAST_REQUEST: cluster_pb2.Cluster.LEAST_REQUEST,
    LbPolicy.RANDOM: cluster_pb2.Cluster.RANDOM,
    LbPolicy.RING_HASH: cluster_pb2.Cluster.RING_HASH,
    LbPolicy.MAGLEV: cluster_pb2.Cluster.MAGLEV,
}

METADATA_NAMESPACE = "xdscp"


def build_cluster(name: str, svc: Service, eds_source: config_source_pb2.ConfigSource) -> cluster_pb2.Cluster:
    """An EDS cluster whose endpoints come from ``eds_source`` (ADS by default)."""
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS, lb_policy=_LB[svc.lb_policy])
    c.connect_timeout.CopyFrom(duration(svc.connect_timeout))
    c.eds_cluster_config.eds_config.CopyFrom(eds_source)
    c.common_lb_config.healthy_panic_threshold.value = svc.panic_threshold
    if svc.health_check is not None:
        _add_health_check(c, name, svc)
    if svc.outlier_detection is not None:
        od, cfg = c.outlier_detection, svc.outlier_detection
        od.consecutive_5xx.value = cfg.consecutive_5xx
        if cfg.consecutive_gateway_failure is not None:
            od.consecutive_gateway_failure.value = cfg.consecutive_gateway_failure
            od.enforcing_consecutive_gateway_failure.value = 100
        od.interval.CopyFrom(duration(cfg.interval))
        od.base_ejection_time.CopyFrom(duration(cfg.base_ejection_time))
        od.max_ejection_percent.value = cfg.max_ejection_percent
    if svc.gray is not None:
        # Subsets by the canary key; requests without a subset (none here) may use any host.
        subsets = c.lb_subset_config
        subsets.fallback_policy = cluster_pb2.Cluster.LbSubsetConfig.ANY_ENDPOINT
        subsets.subset_selectors.add().keys.append(svc.gray.key)
    labels = {"namespace": svc.namespace, "group": svc.group, "service": svc.name, **svc.metadata}
    c.metadata.filter_metadata[METADATA_NAMESPACE].CopyFrom(string_struct(labels))
    return c


def _add_health_check(c: cluster_pb2.Cluster, name: str, svc: Service) -> None:
    cfg = svc.health_check
    assert cfg is not None
    hc = c.health_checks.add()
    hc.timeout.CopyFrom(duration(cfg.timeout))
    hc.interval.CopyFrom(duration(cfg.interval))
    hc.healthy_threshold.value = cfg.healthy_threshold
    hc.unhealthy_threshold.value = cfg.unhealthy_threshold
    if cfg.type == "tcp":
        hc.tcp_health_check.SetInParent()
        return
    http = hc.http_health_check
    http.path = cfg.path
    http.host = name  # the Host a route to this service matches; a Nacos name may not be one
    for code in sorted(set(cfg.expected_statuses)):
        http.expected_statuses.append(range_pb2.Int64Range(start=code, end=code + 1))
