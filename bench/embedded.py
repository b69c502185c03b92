"""The embedded registry with a real Envoy: how fast removals reach the data plane.

1. Deregistration: time from the Nacos v1 DELETE call returning to Envoy's /clusters no
   longer listing the instance.
2. Upstream death: time from a persistent instance's server closing to Envoy's
   /clusters showing it UNHEALTHY (xdscp's TCP check, default 2 s interval and
   2 failures).

    python bench/embedded.py --tries 20 --deaths 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.registration import deregister, register
from xdscp.local.upstream import NamedUpstream


def wait(cond: Callable[[], bool], timeout: float = 30.0) -> float:
    start = time.perf_counter()
    while not cond():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("Envoy did not follow in time")
    return (time.perf_counter() - start) * 1000


def health(envoy: EnvoyProcess, addr: str) -> str | None:
    return envoy.cluster_hosts("echo").get(addr, {}).get("eds_health")


def summary(label: str, ms: list[float]) -> None:
    p99 = sorted(ms)[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(f"{label:<34} n={len(ms):<3} p50 {statistics.median(ms):8.1f} ms   p99 {p99:8.1f} ms   "
          f"max {max(ms):8.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tries", type=int, default=20)
    p.add_argument("--deaths", type=int, default=5)
    p.add_argument("--mode", choices=["ads", "delta"], default="ads")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="xdscp-bench-") as d:
        work = Path(d)
        keep = NamedUpstream("keep").start()
        xdscp = XdscpProcess(work, log_level="warning",
                             sources=[{"kind": "embedded", "database": str(work / "registry.db")}]).start()
        envoy = EnvoyProcess(REPO_ENVOY_DIR / f"bootstrap-{args.mode}.yaml", xdscp.xds_address, work).start()
        admin = xdscp.admin_address
        try:
            register(admin, "echo", "127.0.0.1", keep.port)
            wait(lambda: f"127.0.0.1:{keep.port}" in envoy.cluster_hosts("echo"))

            dereg: list[float] = []
            victim = NamedUpstream("victim").start()
            addr = f"127.0.0.1:{victim.port}"
            for _ in range(args.tries):
                register(admin, "echo", "127.0.0.1", victim.port)
                wait(lambda: addr in envoy.cluster_hosts("echo"))
                time.sleep(0.05)
                deregister(admin, "echo", "127.0.0.1", victim.port)
                dereg.append(wait(lambda: addr not in envoy.cluster_hosts("echo")))
            victim.stop()

            deaths: list[float] = []
            for i in range(args.deaths):
                victim = NamedUpstream(f"victim{i}").start()
                addr = f"127.0.0.1:{victim.port}"
                register(admin, "echo", "127.0.0.1", victim.port)
                wait(lambda a=addr: health(envoy, a) == "HEALTHY")
                time.sleep(0.3 + i * 0.37)  # land at different points of the check interval
                victim.stop()
                deaths.append(wait(lambda a=addr: health(envoy, a) == "UNHEALTHY"))
                deregister(admin, "echo", "127.0.0.1", victim.port)
        finally:
            envoy.stop()
            xdscp.stop()
            keep.stop()
    print(f"embedded registry -> real Envoy 1.40 ({args.mode}), 2-core machine")
    summary("deregistration -> gone from Envoy", dereg)
    summary("upstream death -> UNHEALTHY in Envoy", deaths)


if __name__ == "__main__":
    main()
