"""What each console page shows, gathered from the running control plane as plain dicts.

Pure reads of the registry, the sources' states, the stream tracker, the cache and the
publisher's PushLog; the templates only lay them out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from xdscp.cache.cache import SnapshotCache
from xdscp.metrics import PUSH_LATENCY
from xdscp.model.locality import Locality
from xdscp.model.registry import Registry
from xdscp.model.service import Service, ServiceKey
from xdscp.server.subscription import sync_state
from xdscp.sources.states import SourceState
from xdscp.translation.push_log import PushLog
from xdscp.type_urls import canonical, kind_name

MAX_LISTED = 500  # services listed on one page; a search narrows it


def ago(ts: float | None, now: float | None = None) -> str:
    """``3 s ago``, ``4 min ago``...; ``never`` for None."""
    if ts is None:
        return "never"
    secs = max(0.0, (now if now is not None else time.time()) - ts)
    if secs < 60:
        return f"{secs:.0f} s ago"
    if secs < 3600:
        return f"{secs / 60:.0f} min ago"
    if secs < 86400:
        return f"{secs / 3600:.1f} h ago"
    return f"{secs / 86400:.1f} d ago"


def matches(key: ServiceKey, query: str) -> bool:
    """A search across namespace, group and name: every word must appear in one of them."""
    text = f"{key.namespace} {key.group} {key.name}".lower()
    return all(word in text for word in query.lower().split())


def sources_of(registry: Registry, key: ServiceKey) -> list[str]:
    return [s for s in registry.sources if key in registry.source_services(s)]


def service_rows(registry: Registry, query: str, locality_default: bool) -> tuple[list[dict[str, Any]], int]:
    """The services matching ``query`` (all when empty), at most MAX_LISTED, and how many matched."""
    services = registry.services
    keys = sorted(k for k in services if not query or matches(k, query))
    rows = []
    for key in keys[:MAX_LISTED]:
        svc = services[key]
        rows.append({
            "namespace": key.namespace, "group": key.group, "name": key.name,
            "sources": sources_of(registry, key),
            "instances": len(svc.instances),
            "healthy": sum(1 for i in svc.instances if i.enabled and i.healthy and not i.draining and i.weight > 0),
            "lb_policy": svc.lb_policy.value,
            "locality_failover": _fails_over(svc, locality_default),
        })
    return rows, len(keys)


def _fails_over(svc: Service, default: bool) -> bool:
    return default if svc.locality_failover is None else svc.locality_failover


def service_detail(registry: Registry, log: PushLog, key: ServiceKey, locality_default: bool) -> dict[str, Any] | None:
    svc = registry.services.get(key)
    if svc is None:
        return None
    by_source = {s: registry.source_services(s).get(key) for s in sources_of(registry, key)}
    instances = []
    for inst in sorted(svc.instances, key=lambda i: (i.host, i.port)):
        from_sources = [s for s, own in by_source.items()
                        if own is not None and any((i.host, i.port) == (inst.host, inst.port) for i in own.instances)]
        instances.append({
            "address": inst.address, "host": inst.host, "port": inst.port,
            "health": _health(inst.healthy, inst.enabled, inst.draining, inst.weight),
            "healthy": inst.healthy, "weight": inst.weight, "enabled": inst.enabled, "draining": inst.draining,
            "zone": inst.zone, "region": inst.region, "priority": inst.priority,
            "ephemeral": inst.ephemeral, "sources": from_sources,
            "since": ago(log.instance_since(key, inst.host, inst.port)),
            "metadata": dict(inst.metadata),
        })
    settings = svc.model_dump(mode="json", exclude={"instances", "name", "namespace", "group"})
    settings["locality_failover"] = _fails_over(svc, locality_default)
    return {"namespace": key.namespace, "group": key.group, "name": key.name,
            "sources": list(by_source), "settings": settings, "instances": instances}


def _health(healthy: bool, enabled: bool, draining: bool, weight: float) -> str:
    """What Envoy makes of the instance."""
    if not enabled:
        return "disabled"
    if draining or weight == 0:
        return "draining"
    return "healthy" if healthy else "unhealthy"


def proxy_rows(nodes: Sequence[Mapping[str, Any]], cache: SnapshotCache) -> list[dict[str, Any]]:
    """Every open stream, with per type the version it holds against the one it is to be
    served now (its locality's), as istioctl proxy-status shows."""
    now = time.time()
    rows = []
    for n in nodes:
        view = None
        if n.get("locality"):
            region, _, zone = str(n["locality"]).partition("/")
            view = Locality(region, zone)
        snapshot = cache.get(view)
        types = []
        for type_url, st in sorted(n["types"].items()):
            current = snapshot.get(type_url).version if snapshot is not None else ""
            types.append({"kind": kind_name(canonical(type_url)), "type_url": type_url,
                          "state": sync_state(st, current), "acked": st["version_acked"] or "-",
                          "current": current or "-", "nack": st["last_nack"] if st["last_nack"] else None,
                          "nacks": st["nacks"]})
        rows.append({"node_id": n["node_id"] or "-", "cluster": n["cluster"] or "-", "group": n["group"] or "-",
                     "locality": n.get("locality") or "-", "transport": n["transport"], "peer": n["peer"],
                     "stream": n["stream"], "since": ago(n.get("connected_since"), now), "types": types,
                     "state": _worst(t["state"] for t in types)})
    return rows


def _worst(states: Any) -> str:
    seen = set(states)
    for state in ("NACKed", "pending", "in sync"):
        if state in seen:
            return state
    return "no types yet"


def source_rows(states: Sequence[SourceState]) -> list[dict[str, Any]]:
    now = time.time()
    return [{**st.as_json(), "last_sync_ago": ago(st.last_sync, now)} for st in states]


def push_rows(log: PushLog, nodes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Recent publishes, newest first, with how many open streams have taken each."""
    now = time.time()
    acked = [{url: st["version_acked"] for url, st in n["types"].items() if st["version_acked"]} for n in nodes]
    return [{"seq": p.seq, "ago": ago(p.at, now), "version": p.version, "changed": list(p.changed),
             "more": p.changed_count - len(p.changed), "changed_count": p.changed_count, "build_ms": p.build_ms,
             "types": sorted(kind_name(t) for t in p.types), "took": log.took(p, acked), "streams": len(nodes)}
            for p in log.recent()]


def push_latency() -> dict[str, Any]:
    """The push latency histogram (xdscp_push_latency_seconds): per bucket, the pushes that
    fell in it, for the chart."""
    uppers: list[float] = []
    cumulative: list[float] = []
    for metric in PUSH_LATENCY.collect():  # this histogram only, not every collector
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                le = sample.labels["le"]
                uppers.append(float("inf") if le == "+Inf" else float(le))
                cumulative.append(sample.value)
    pairs = sorted(zip(uppers, cumulative, strict=True))
    counts = [c - (pairs[i - 1][1] if i else 0) for i, (_, c) in enumerate(pairs)]
    labels = ["+Inf" if u == float("inf") else f"{u * 1000:g} ms" for u, _ in pairs]
    return {"labels": labels, "counts": counts, "total": pairs[-1][1] if pairs else 0}
