"""A wildcard Envoy against an on-demand Envoy, side by side, on one registry of N services.

Two ``xdscp serve`` processes follow the same registry file (N services, one instance
each, all on one local upstream): one with today's listener (every virtual host in one
route configuration), one with ``listener.on_demand: true``. A real Envoy 1.40 follows
each: ``envoy/bootstrap-delta.yaml`` (wildcard CDS) and ``envoy/bootstrap-on-demand.yaml``.

Printed per N, for each side:
- xdscp: seconds from spawn to ready, RSS, and RSS per service beyond an empty registry's;
- Envoy: seconds from spawn until it serves the first request (the wildcard Envoy has
  every cluster by then), RSS, clusters held;
- the first request to each of 10 services (on demand: discovery included), p50 and max;
- steady state: 300 requests over those 10 services on one connection, p50 and p99.

    python bench/on_demand.py --services 10000,100000
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
from pathlib import Path

from fanout import rss_kib

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.upstream import NamedUpstream

USED = 10  # services each Envoy is asked for


def write_registry(path: Path, services: int, port: int) -> None:
    doc = {"services": [{"name": f"svc-{i}", "instances": [{"host": "127.0.0.1", "port": port}]}
                        for i in range(services)]}
    path.write_text(json.dumps(doc))


def get(conn: http.client.HTTPConnection, host: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    conn.request("GET", "/", headers={"Host": host})
    resp = conn.getresponse()
    resp.read()
    return resp.status, (time.perf_counter() - t0) * 1000


def clusters_held(envoy: EnvoyProcess) -> int:
    return envoy.gauge("cluster_manager.active_clusters") or 0


def wait_serving(envoy: EnvoyProcess, port: int, host: str, timeout: float) -> float:
    """Seconds until a request to ``host`` through ``envoy`` gets 200."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status, _ = get(conn, host)
            conn.close()
            if status == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{host} not served through Envoy in {timeout} s")


def side(work: Path, registry: Path, services: int, on_demand: bool, timeout: float) -> dict[str, float]:
    name = "on-demand" if on_demand else "wildcard"
    (work / name).mkdir()
    t0 = time.monotonic()
    xdscp = XdscpProcess(work / name, registry, name="xdscp", log_level="warning", poll_interval=1.0,
                         listener={"on_demand": on_demand}).start(timeout=timeout)
    out: dict[str, float] = {"xdscp_ready_s": time.monotonic() - t0}
    assert xdscp.pid is not None
    out["xdscp_rss_mib"] = rss_kib(xdscp.pid) / 1024
    bootstrap = "bootstrap-on-demand.yaml" if on_demand else "bootstrap-delta.yaml"
    envoy = EnvoyProcess(REPO_ENVOY_DIR / bootstrap, xdscp.xds_address, work / name)
    try:
        t0 = time.monotonic()
        envoy.start(timeout=timeout)
        port = xdscp.listener_port
        # the wildcard Envoy routes once it has every cluster; the on-demand one at once
        wait_serving(envoy, port, "svc-0" if on_demand else f"svc-{services - 1}", timeout)
        out["envoy_serving_s"] = time.monotonic() - t0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        hosts = [f"svc-{(i * 7919) % services}" for i in range(1, USED + 1)]
        firsts = []
        for h in hosts:
            status, ms = get(conn, h)
            assert status == 200, (h, status)
            firsts.append(ms)
        out["first_p50_ms"], out["first_max_ms"] = statistics.median(firsts), max(firsts)
        steady = []
        for i in range(300):
            status, ms = get(conn, hosts[i % USED])
            assert status == 200
            steady.append(ms)
        steady.sort()
        out["steady_p50_ms"], out["steady_p99_ms"] = statistics.median(steady), steady[int(0.99 * len(steady)) - 1]
        conn.close()
        out["envoy_rss_mib"] = rss_kib(envoy.pid) / 1024
        out["envoy_clusters"] = clusters_held(envoy)
    finally:
        envoy.stop()
        xdscp.stop()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--services", default="10000", help="registry sizes, comma-separated")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds any one side may take to be ready")
    args = p.parse_args()
    print(f"{'services':>9} {'side':<10}{'xdscp s':>9}{'RSS MiB':>9}{'KiB/svc':>9}{'envoy s':>9}"
          f"{'RSS MiB':>9}{'clusters':>9}{'1st p50':>9}{'1st max':>9}{'p50 ms':>8}{'p99 ms':>8}")
    up = NamedUpstream("up").start()
    try:
        with tempfile.TemporaryDirectory(prefix="xdscp-on-demand-") as d:
            run_sizes(args, up, Path(d))
    finally:
        up.stop()


def empty_rss_mib(d: Path) -> float:
    """An xdscp serving no service: the baseline per-service memory is counted from."""
    (d / "empty").mkdir()
    registry = d / "empty" / "registry.json"
    write_registry(registry, 0, 1)
    xdscp = XdscpProcess(d / "empty", registry, log_level="warning", poll_interval=1.0).start()
    try:
        assert xdscp.pid is not None
        return rss_kib(xdscp.pid) / 1024
    finally:
        xdscp.stop()


def run_sizes(args: argparse.Namespace, up: NamedUpstream, d: Path) -> None:
    base = empty_rss_mib(d)
    print(f"an empty registry's xdscp: {base:.0f} MiB RSS")
    for n in (int(x) for x in args.services.split(",")):
        work = d / str(n)
        work.mkdir()
        registry = work / "registry.json"
        write_registry(registry, n, up.port)
        for on_demand in (False, True):
            r = side(work, registry, n, on_demand, args.timeout)
            print(f"{n:>9} {'on demand' if on_demand else 'wildcard':<10}{r['xdscp_ready_s']:9.1f}"
                  f"{r['xdscp_rss_mib']:9.0f}{(r['xdscp_rss_mib'] - base) * 1024 / n:9.1f}{r['envoy_serving_s']:9.1f}"
                  f"{r['envoy_rss_mib']:9.0f}{r['envoy_clusters']:9.0f}{r['first_p50_ms']:9.1f}"
                  f"{r['first_max_ms']:9.1f}{r['steady_p50_ms']:8.2f}{r['steady_p99_ms']:8.2f}", flush=True)

if __name__ == "__main__":
    main()
