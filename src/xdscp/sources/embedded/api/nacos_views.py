"""Services and instances as Nacos shows them to its clients: host objects and the
ServiceInfo of a query, a subscription or a push (HTTP and gRPC alike)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from xdscp.model.service import DEFAULT_NAMESPACE, Instance, Service, ServiceKey
from xdscp.nacos_protocol import grouped_name, nacos_cluster, split_grouped_name
from xdscp.sources.embedded.api.request_params import ParamError


@dataclass(frozen=True, slots=True)
class HeartbeatPolicy:
    """What clients are told about heartbeats (milliseconds, as Nacos reports them); the
    thresholds are the embedded source's config."""

    unhealthy_ms: int
    remove_ms: int
    interval_ms: int = 5000  # how often a client beats: Nacos' own client default, not ours to set


def service_key(service_name: str, group: str | None, namespace: str | None) -> ServiceKey:
    """The key of ``service_name`` (``group@@name`` or bare) as a Nacos request names it;
    a ParamError names the parameter Nacos calls it by."""
    grp, name = split_grouped_name(service_name, group)
    try:
        return Service(name=name, namespace=namespace or DEFAULT_NAMESPACE, group=grp).key
    except ValidationError as e:
        err = e.errors()[0]
        param = {"name": "serviceName", "group": "groupName", "namespace": "namespaceId"}.get(
            str(err["loc"][0]), "serviceName")
        raise ParamError(param, f"Param '{param}' is invalid: {err['msg']}") from None


def host_json(key: ServiceKey, inst: Instance, beats: HeartbeatPolicy) -> dict[str, Any]:
    service = grouped_name(key.group, key.name)
    return {
        "instanceId": f"{inst.host}#{inst.port}#{nacos_cluster(inst.cluster)}#{service}",
        "ip": inst.host,
        "port": inst.port,
        "weight": inst.weight,
        "healthy": inst.healthy,
        "enabled": inst.enabled,
        "ephemeral": inst.ephemeral,
        "clusterName": nacos_cluster(inst.cluster),
        "serviceName": service,
        "metadata": dict(inst.metadata),
        "instanceHeartBeatInterval": beats.interval_ms,
        "instanceHeartBeatTimeOut": beats.unhealthy_ms,
        "ipDeleteTimeout": beats.remove_ms,
        "instanceIdGenerator": "simple",
    }


def selected_hosts(key: ServiceKey, svc: Service | None, beats: HeartbeatPolicy, clusters: list[str],
                   healthy_only: bool) -> list[dict[str, Any]]:
    """The host objects of ``svc``'s enabled instances in ``clusters`` (all when empty),
    healthy ones only with ``healthy_only``. A disabled instance is left out, as Nacos leaves
    it out of lists and pushes: clients that ignore ``enabled`` (Higress' McpBridge) must
    not route to it."""
    hosts = []
    for inst in svc.instances if svc is not None else ():
        if not inst.enabled or (healthy_only and not inst.healthy) or \
                (clusters and nacos_cluster(inst.cluster) not in clusters):
            continue
        hosts.append(host_json(key, inst, beats))
    return hosts


def service_info(key: ServiceKey, svc: Service | None, beats: HeartbeatPolicy, *, name: str,
                 clusters: list[str] | None = None, healthy_only: bool = False,
                 ref_time: int) -> dict[str, Any]:
    """Nacos' ServiceInfo. ``name``: the HTTP v1 API shows ``group@@name``, gRPC the bare name;
    ``ref_time``: its lastRefTime, the store's (see ref_times)."""
    clusters = clusters or []
    enabled = [i for i in svc.instances if i.enabled] if svc is not None else []
    healthy = sum(1 for i in enabled if i.healthy)
    total = len(enabled)
    threshold = svc.protect_threshold if svc is not None else 0.0
    return {
        "name": name,
        "groupName": key.group,
        "clusters": ",".join(clusters),
        "cacheMillis": 10000,
        "hosts": selected_hosts(key, svc, beats, clusters, healthy_only),
        "lastRefTime": ref_time,
        "checksum": "",
        "allIPs": False,
        "reachProtectionThreshold": bool(total and threshold and healthy / total < threshold),
        "valid": True,
    }
