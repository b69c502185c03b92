"""Translation cost: a full snapshot build, a one-instance change, and each collection's share.

    python bench/translate.py --services 10000 --instances 10 [--gray-share 0.1]

Run side by side in one process: Envoy resources only, then with MCP on (Istio
ServiceEntry, DestinationRule, and a VirtualService for the services with a gray
release). The one-instance change must touch a single ClusterLoadAssignment (and, with
MCP, a single ServiceEntry); the benchmark checks that, and prints p50/max over the
repeated changes. Then each collection's builder alone, over every service: what one
collection costs, built and serialized. Then locality failover (``--localities``): every
service fails over, instances in 3 zones; what opening a locality group costs (its
assignments built), its memory, and a one-instance change with 0, 1, 3... groups open.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable

from synthetic_registry import synthetic_registry

from xdscp import runtime_settings
from xdscp.cache.resource import Resource
from xdscp.config import Config, McpConfig, XdsConfig
from xdscp.model.locality import Locality
from xdscp.model.naming import cluster_name
from xdscp.model.service import GrayRelease, Service
from xdscp.translation.clusters import build_cluster
from xdscp.translation.config_sources import build_config_source
from xdscp.translation.endpoints import build_load_assignment
from xdscp.translation.istio_traffic import build_traffic_rules
from xdscp.translation.service_entries import build_service_entries
from xdscp.type_urls import CLUSTER, DESTINATION_RULE, ENDPOINT, SERVICE_ENTRY, VIRTUAL_SERVICE

GRAY = GrayRelease(key="version", stable="v1", canary="v2", header="x-canary", canary_weight=10)


def services_with_gray(services: int, instances: int, share: float) -> list[Service]:
    out = synthetic_registry(services, instances, ephemeral=True)
    every = round(1 / share) if share > 0 else 0
    return [s.model_copy(update={"gray": GRAY}) if every and i % every == 0 else s for i, s in enumerate(out)]


def translation(services: list[Service], mcp: bool, changes: int) -> tuple[float, list[float]]:
    translator = runtime_settings.translator(Config(mcp=McpConfig(enabled=mcp)))
    view = {s.key: s for s in services}
    started = time.perf_counter()
    first = translator.update(view, list(view))
    full = time.perf_counter() - started
    target = services[len(services) // 2 + 1]
    flipped = target.model_copy(update={"instances": (
        target.instances[0].model_copy(update={"healthy": False}), *target.instances[1:])})
    times = []
    for i in range(changes):
        view[target.key] = flipped if i % 2 == 0 else target
        started = time.perf_counter()
        snap = translator.update(view, [target.key])
        times.append((time.perf_counter() - started) * 1000)
        assert snap.get(ENDPOINT).changed == {target.name}, "a one-instance change touched other assignments"
        assert snap.get(CLUSTER) is first.get(CLUSTER), "a one-instance change rebuilt clusters"
        if mcp:
            assert len(snap.get(SERVICE_ENTRY).changed) == 1, "a one-instance change touched other ServiceEntries"
            assert snap.get(DESTINATION_RULE) is first.get(DESTINATION_RULE), "a one-instance change touched rules"
    return full, times


def collection_costs(services: list[Service]) -> list[tuple[str, float, int]]:
    """(collection, seconds to build and serialize it for every service, resources built)."""
    settings = runtime_settings.mcp_settings(McpConfig(enabled=True))
    eds_source = build_config_source("ads", "xdscp", 1.0)
    builders: list[tuple[str, Callable[[Service], list[Resource]]]] = [
        ("Cluster", lambda s: [Resource.of(CLUSTER, cluster_name(s.key), build_cluster(cluster_name(s.key), s,
                                                                                        eds_source))]),
        ("ClusterLoadAssignment", lambda s: [Resource.of(ENDPOINT, cluster_name(s.key),
                                                         build_load_assignment(cluster_name(s.key), s))]),
        ("ServiceEntry", lambda s: build_service_entries(s.key, s, settings)),
        ("DestinationRule + VirtualService", lambda s: build_traffic_rules(s.key, s, settings)),
    ]
    out = []
    for label, build in builders:
        started = time.perf_counter()
        built = sum(len(build(s)) for s in services)
        out.append((label, time.perf_counter() - started, built))
    return out


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def locality_costs(services: int, instances: int, groups: list[int], changes: int) -> None:
    """Every service with locality failover, instances dealt over zones z0..z2 of r1."""
    svcs = synthetic_registry(services, instances, ephemeral=True, zones=3)
    view = {s.key: s for s in svcs}
    places = [Locality("r1", f"z{i}") if i < 3 else Locality(f"r{i}", "z0") for i in range(max(groups, default=0))]
    translator = runtime_settings.translator(Config(xds=XdsConfig(locality_failover=True)))
    translator.update(view, list(view))
    # Memory: what an open group keeps, over the three groups whose every assignment differs
    # from the plain one (the zones of r1; another region's equal the plain ones and are
    # shared, costing nothing). RSS, and Python's own allocations (tracemalloc), measured
    # apart from the timings.
    zones = [Locality("r1", f"z{i}") for i in range(3)]
    gc.collect()
    rss0 = rss_bytes()
    for loc in zones:
        translator.localities.open(loc)
    gc.collect()
    rss_kept = (rss_bytes() - rss0) / len(zones)
    for loc in zones:
        translator.localities.close(loc)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    translator.localities.open(zones[0])
    gc.collect()
    kept = sum(st.size_diff for st in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    translator.localities.close(zones[0])
    started = time.perf_counter()
    translator.localities.open(Locality("r1", "z1"))
    opening = time.perf_counter() - started
    translator.localities.close(Locality("r1", "z1"))
    print(f"\nlocality failover on all {services} services, instances in 3 zones:")
    print(f"- opening a locality group (first node of a locality): {opening * 1000:.0f} ms, "
          f"{opening / services * 1e6:.0f} us per service")
    print(f"- memory one group keeps: {rss_kept / 1024:,.0f} KiB of RSS ({rss_kept / services:,.0f} bytes per "
          f"service); Python objects alone {kept / 1024:,.0f} KiB")
    print("\n| groups open | one-instance change p50 / max | per group |")
    print("|---|---|---|")
    target = svcs[len(svcs) // 2 + 1]
    flipped = target.model_copy(update={"instances": (
        target.instances[0].model_copy(update={"healthy": False}), *target.instances[1:])})
    base = None
    for count in groups:
        for loc in places[:count]:
            translator.localities.open(loc)
        times = []
        for i in range(changes):
            view[target.key] = flipped if i % 2 == 0 else target
            started = time.perf_counter()
            translator.update(view, [target.key])
            times.append((time.perf_counter() - started) * 1000)
            for ts in translator.localities.current().values():
                assert ts.changed == {target.name}, "a one-instance change touched other assignments"
        p50 = statistics.median(times)
        base = p50 if base is None else base
        per = f"{(p50 - base) / count * 1000:.0f} us" if count else "-"
        print(f"| {count} | {p50:.2f} / {max(times):.2f} ms | {per} |")
        for loc in places[:count]:
            translator.localities.close(loc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--instances", type=int, default=10)
    p.add_argument("--changes", type=int, default=200)
    p.add_argument("--gray-share", type=float, default=0.1, help="share of services with a gray release")
    p.add_argument("--localities", default="0,1,3,10", help="locality groups open, per row (empty: skip)")
    p.add_argument("--locality-services", type=int, default=1000, help="services in the locality part")
    args = p.parse_args()

    started = time.perf_counter()
    services = services_with_gray(args.services, args.instances, args.gray_share)
    model = time.perf_counter() - started
    print(f"{args.services} services x {args.instances} instances, {args.gray_share:.0%} with a gray release; "
          f"building the registry model (pydantic validation): {model:.2f} s")
    print("| | full translation | one-instance change p50 / max |")
    print("|---|---|---|")
    for mcp in (False, True):
        full, times = translation(services, mcp, args.changes)
        label = "plus Istio collections (mcp.enabled)" if mcp else "Envoy resources only"
        print(f"| {label} | {full:.2f} s | {statistics.median(times):.2f} / {max(times):.2f} ms |")
    print("\n| collection | built for every service | per service | resources |")
    print("|---|---|---|---|")
    for label, seconds, built in collection_costs(services):
        print(f"| {label} | {seconds:.2f} s | {seconds / args.services * 1e6:.0f} us | {built:,} |")
    print(f"\n(VirtualServices: one per gray release; types {VIRTUAL_SERVICE.rsplit('/', 1)[1]} "
          f"and {DESTINATION_RULE.rsplit('/', 1)[1]} are served under v1, v1beta1 and v1alpha3 at no cost)")
    if args.localities:
        locality_costs(args.locality_services, args.instances, [int(x) for x in args.localities.split(",")],
                       args.changes)


if __name__ == "__main__":
    main()
