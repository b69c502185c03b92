"""Translation cost: a full snapshot build, and a one-instance change.

    python bench/translate.py --services 10000 --instances 10 [--mcp]

The one-instance change must touch a single ClusterLoadAssignment; the benchmark
checks that, and prints p50/max over the repeated changes.
"""

from __future__ import annotations

import argparse
import statistics
import time

from synthetic_registry import synthetic_registry

from xdscp import runtime_settings
from xdscp.config import Config, McpConfig
from xdscp.type_urls import CLUSTER, ENDPOINT


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--instances", type=int, default=10)
    p.add_argument("--changes", type=int, default=200)
    p.add_argument("--mcp", action="store_true", help="also build Istio ServiceEntries (mcp.enabled)")
    args = p.parse_args()

    t0 = time.perf_counter()
    services = synthetic_registry(args.services, args.instances, ephemeral=True)
    t1 = time.perf_counter()
    translator = runtime_settings.translator(Config(mcp=McpConfig(enabled=args.mcp)))
    view = {s.key: s for s in services}
    first = translator.update(view, list(view))
    t2 = time.perf_counter()

    target = services[len(services) // 2]
    flipped = target.model_copy(update={"instances": (
        target.instances[0].model_copy(update={"healthy": False}), *target.instances[1:])})
    times = []
    for i in range(args.changes):
        view[target.key] = flipped if i % 2 == 0 else target
        start = time.perf_counter()
        snap = translator.update(view, [target.key])
        times.append((time.perf_counter() - start) * 1000)
        assert snap.get(ENDPOINT).changed == {target.name}, "a one-instance change touched other assignments"
        assert snap.get(CLUSTER) is first.get(CLUSTER), "a one-instance change rebuilt clusters"

    print(f"{args.services} services x {args.instances} instances" + (", with ServiceEntries" if args.mcp else ""))
    print(f"  build the registry model (pydantic validation)  {t1 - t0:8.2f} s")
    print(f"  full translation + serialization                 {t2 - t1:8.2f} s")
    print(f"  one-instance change ({args.changes}x): p50 {statistics.median(times):.2f} ms, "
          f"max {max(times):.2f} ms; one ClusterLoadAssignment" + (" and ServiceEntry" if args.mcp else "")
          + " re-serialized, nothing else")


if __name__ == "__main__":
    main()
