"""Registry change -> Envoy's /clusters reflecting it, with a real Envoy on loopback.

Each change flips one instance between healthy and unhealthy and times until Envoy's
admin /clusters shows the new health. Two registries:

* file: the registry file is replaced atomically (as config management does);
  xdscp polls it (20 ms by default);
* embedded: ``PATCH /v1/services/echo/instances/HOST:PORT {"healthy": ...}`` on the
  embedded registry's API; the clock starts before the call.

Prints p50/p99/max in milliseconds.

    python bench/convergence.py --changes 100 --source both --mode both
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.registration import register
from xdscp.local.upstream import NamedUpstream
from xdscp.sources.registry_file import write_registry_file


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write(path: Path, ports: list[int], unhealthy: int | None) -> None:
    instances = [{"host": "127.0.0.1", "port": p, "healthy": i != unhealthy} for i, p in enumerate(ports)]
    write_registry_file(path, [{"name": "echo", "instances": instances}])


def patch_health(admin: str, port: int, healthy: bool) -> None:
    req = urllib.request.Request(f"http://{admin}/v1/services/echo/instances/127.0.0.1:{port}",
                                 data=json.dumps({"healthy": healthy}).encode(), method="PATCH",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).close()


def run(source: str, mode: str, changes: int, poll_interval: float, workdir: Path) -> list[float]:
    upstreams = [NamedUpstream(n).start() for n in ("a", "b", "c")]
    ports = [u.port for u in upstreams]
    registry = workdir / "registry.yaml"
    if source == "file":
        write(registry, ports, None)
        xdscp = XdscpProcess(workdir, registry, poll_interval=poll_interval, log_level="warning").start()

        def change(unhealthy: bool) -> None:
            write(registry, ports, 2 if unhealthy else None)
    else:
        # Health comes from the API alone: the embedded registry's own checks are off.
        xdscp = XdscpProcess(workdir, log_level="warning", sources=[{
            "kind": "embedded", "database": str(workdir / "registry.db"),
            "instance_check": {"enabled": False}}]).start()
        for port in ports:
            register(xdscp.admin_address, "echo", "127.0.0.1", port)

        def change(unhealthy: bool) -> None:
            patch_health(xdscp.admin_address, ports[2], not unhealthy)
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
            change(unhealthy)
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
    p.add_argument("--changes", type=int, default=100)
    p.add_argument("--mode", choices=["ads", "delta", "both"], default="both")
    p.add_argument("--source", choices=["file", "embedded", "both"], default="both")
    p.add_argument("--poll-interval", type=float, default=0.02, help="file source poll interval (xdscp's default 0.02)")
    args = p.parse_args()
    modes = ["ads", "delta"] if args.mode == "both" else [args.mode]
    sources = ["file", "embedded"] if args.source == "both" else [args.source]
    poll_ms = args.poll_interval * 1000
    print(f"registry change -> Envoy /clusters, {args.changes} changes, file poll interval {poll_ms:.0f} ms")
    print(f"{'source':<9}{'mode':<6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}")
    for source in sources:
        for mode in modes:
            with tempfile.TemporaryDirectory(prefix="xdscp-bench-") as d:
                s = run(source, mode, args.changes, args.poll_interval, Path(d))
            print(f"{source:<9}{mode:<6} {statistics.median(s):8.1f} {percentile(s, 0.99):8.1f} {max(s):8.1f} "
                  f"{statistics.fmean(s):8.1f}")


if __name__ == "__main__":
    main()
