"""Registry change -> Envoy's /clusters reflecting it, with a real Envoy on loopback.

Each change flips one instance between healthy and unhealthy in the registry file
(an atomic replace, as config management does) and times until Envoy's admin
/clusters shows the new health. Prints p50/p99/max in milliseconds.

    python bench/convergence.py --changes 20 --mode ads
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.upstream import NamedUpstream
from xdscp.sources.registry_file import write_registry_file


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write(path: Path, ports: list[int], unhealthy: int | None) -> None:
    instances = [{"host": "127.0.0.1", "port": p, "healthy": i != unhealthy} for i, p in enumerate(ports)]
    write_registry_file(path, [{"name": "echo", "instances": instances}])


def run(mode: str, changes: int, poll_interval: float, workdir: Path) -> list[float]:
    upstreams = [NamedUpstream(n).start() for n in ("a", "b", "c")]
    ports = [u.port for u in upstreams]
    registry = workdir / "registry.yaml"
    write(registry, ports, None)
    xdscp = XdscpProcess(workdir, registry, poll_interval=poll_interval, log_level="warning").start()
    envoy = EnvoyProcess(REPO_ENVOY_DIR / f"bootstrap-{mode}.yaml", xdscp.xds_address, workdir).start()
    target = f"127.0.0.1:{ports[2]}"
    samples: list[float] = []
    try:
        while target not in envoy.cluster_hosts("echo"):
            time.sleep(0.01)
        for i in range(changes):
            unhealthy = i % 2 == 0
            expected = "UNHEALTHY" if unhealthy else "HEALTHY"
            time.sleep(0.05 + (i % 7) * 0.013)  # spread changes across the file poll's phase
            start = time.perf_counter()
            write(registry, ports, 2 if unhealthy else None)
            while envoy.cluster_hosts("echo").get(target, {}).get("eds_health") != expected:
                if time.perf_counter() - start > 10:
                    raise TimeoutError("Envoy did not follow the change in 10 s")
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        envoy.stop()
        xdscp.stop()
        for u in upstreams:
            u.stop()
    return samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--mode", choices=["ads", "delta", "both"], default="both")
    p.add_argument("--poll-interval", type=float, default=0.02, help="file source poll interval (xdscp's default 0.02)")
    args = p.parse_args()
    modes = ["ads", "delta"] if args.mode == "both" else [args.mode]
    poll_ms = args.poll_interval * 1000
    print(f"file change -> Envoy /clusters, {args.changes} changes, file poll interval {poll_ms:.0f} ms")
    print(f"{'mode':<6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}")
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="xdscp-bench-") as d:
            s = run(mode, args.changes, args.poll_interval, Path(d))
        print(f"{mode:<6} {statistics.median(s):8.1f} {percentile(s, 0.99):8.1f} {max(s):8.1f} "
              f"{statistics.fmean(s):8.1f}")


if __name__ == "__main__":
    main()
