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

Then, with ``--envoys E`` (0: skipped), a fleet on the embedded registry (SQLite, the same
N services): one on-demand ``xdscp serve`` and E real on-demand Envoys, each holding the
same 10 services (they share the listener's port, SO_REUSEPORT, so requests on new
connections are dealt over them until every Envoy holds all 10). Printed:
- xdscp's startup on the embedded registry: seconds from spawn to ready, RSS;
- one change (an instance of one of the 10 turned unhealthy, then healthy, ``--rounds``
  times through the registry's API): xdscp's CPU from the call until every Envoy's
  ``membership_healthy`` shows it, less its idle rate over the same time; and that time;
- a restart (kill -9, then start on the same database): seconds until every Envoy is
  reconnected and holds what it held, and how many Envoys saw a CDS update or a
  membership change from it (0 is churn-free).

    python bench/on_demand.py --services 10000,100000 --envoys 100
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fanout import cpu_seconds, rss_kib

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.registration import patch_instance
from xdscp.local.upstream import NamedUpstream
from xdscp.model.service import Instance, Service
from xdscp.sources.embedded.database import RegistryDatabase

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
    envoy = EnvoyProcess(REPO_ENVOY_DIR / bootstrap, xdscp.xds_address, work / name, admin_timeout=300)
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
    p.add_argument("--envoys", type=int, default=0, help="on-demand Envoys in the fleet run (0: no fleet run)")
    p.add_argument("--rounds", type=int, default=6, help="changes measured in the fleet run")
    p.add_argument("--sides", default="wildcard,on-demand", help="which single-Envoy sides to run")
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
            if ("on-demand" if on_demand else "wildcard") not in args.sides.split(","):
                continue
            r = side(work, registry, n, on_demand, args.timeout)
            print(f"{n:>9} {'on demand' if on_demand else 'wildcard':<10}{r['xdscp_ready_s']:9.1f}"
                  f"{r['xdscp_rss_mib']:9.0f}{(r['xdscp_rss_mib'] - base) * 1024 / n:9.1f}{r['envoy_serving_s']:9.1f}"
                  f"{r['envoy_rss_mib']:9.0f}{r['envoy_clusters']:9.0f}{r['first_p50_ms']:9.1f}"
                  f"{r['first_max_ms']:9.1f}{r['steady_p50_ms']:8.2f}{r['steady_p99_ms']:8.2f}", flush=True)
        if args.envoys:
            fleet(args, work, n, up)


def until_all(envoys: list[EnvoyProcess], check: Callable[[EnvoyProcess], bool], timeout: float, what: str) -> None:
    t0 = time.monotonic()
    pending = list(envoys)
    while pending:
        pending = [e for e in pending if not check(e)]
        if pending and time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{len(pending)} of {len(envoys)} Envoys: not {what} in {timeout} s")
        if pending:
            time.sleep(0.01)


def teach(port: int, envoys: list[EnvoyProcess], hosts: list[str], timeout: float) -> None:
    """Requests on new connections until every Envoy holds every one of ``hosts``."""
    want = len(hosts) + 1  # and xdscp's own cluster
    t0 = time.monotonic()
    while True:
        for _ in range(len(envoys)):
            for h in hosts:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status, _ = get(conn, h)
                conn.close()
                assert status == 200, (h, status)
        if all(clusters_held(e) == want for e in envoys):
            return
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("Envoys did not all learn the services")


def fleet(args: argparse.Namespace, work: Path, services: int, up: NamedUpstream) -> None:
    """E on-demand Envoys on the embedded registry: startup, the CPU of one change, a restart."""
    d = work / "fleet"
    d.mkdir()
    db = RegistryDatabase(d / "registry.db")
    db.import_services([Service(name=f"svc-{i}", instances=(Instance(host="127.0.0.1", port=up.port, ephemeral=False),))
                        for i in range(services)])
    db.close()
    t0 = time.monotonic()
    xdscp = XdscpProcess(d, log_level="warning", listener={"on_demand": True}, sources=[{
        "kind": "embedded", "database": str(d / "registry.db"), "instance_check": {"enabled": False}}],
    ).start(timeout=args.timeout)
    ready_s = time.monotonic() - t0
    assert xdscp.pid is not None
    print(f"{services:>9} fleet: embedded registry, xdscp ready in {ready_s:.1f} s, "
          f"{rss_kib(xdscp.pid) / 1024:.0f} MiB RSS", flush=True)
    envoys: list[EnvoyProcess] = []
    try:
        for i in range(args.envoys):
            envoys.append(EnvoyProcess(REPO_ENVOY_DIR / "bootstrap-on-demand.yaml", xdscp.xds_address, d,
                                       node_id=f"envoy-{i}").start(timeout=args.timeout))
        until_all(envoys, lambda e: e.ready(), args.timeout, "ready")
        hosts = [f"svc-{(i * 7919) % services}" for i in range(1, USED + 1)]
        teach(xdscp.listener_port, envoys, hosts, args.timeout)
        target = hosts[0]
        gauge = f"cluster.{target}.membership_healthy"
        envoy_rss = sum(rss_kib(e.pid) for e in envoys) / 1024 / len(envoys)
        print(f"{services:>9} fleet: {len(envoys)} on-demand Envoys hold {USED} services each, "
              f"{envoy_rss:.0f} MiB RSS each", flush=True)

        time.sleep(2.0)  # the idle rate: what xdscp spends with nothing changing
        c0, t0 = cpu_seconds(xdscp.pid), time.monotonic()
        time.sleep(5.0)
        idle_rate = (cpu_seconds(xdscp.pid) - c0) / (time.monotonic() - t0)
        cpus, walls = [], []
        for rnd in range(args.rounds):
            healthy = rnd % 2 == 1  # down, up, down...
            c0, t0 = cpu_seconds(xdscp.pid), time.monotonic()
            patch_instance(xdscp.admin_address, target, "127.0.0.1", up.port, healthy=healthy)
            until_all(envoys, lambda e, h=healthy: e.gauge(gauge) == int(h), args.timeout, "following the change")
            wall = time.monotonic() - t0
            cpus.append((cpu_seconds(xdscp.pid) - c0 - idle_rate * wall) * 1000)
            walls.append(wall * 1000)
            time.sleep(1.0)
        print(f"{services:>9} fleet: one change to {len(envoys)} Envoys: xdscp CPU median "
              f"{statistics.median(cpus):.1f} ms (max {max(cpus):.1f}; idle {idle_rate * 1000:.1f} ms/s taken off), "
              f"until every Envoy shows it: median {statistics.median(walls):.0f} ms (this includes polling "
              f"{len(envoys)} Envoys' stats)", flush=True)

        before = [e.config_churn(hosts) for e in envoys]
        xdscp.kill()
        until_all(envoys, lambda e: e.gauge("control_plane.connected_state") == 0, args.timeout, "disconnected")
        t0 = time.monotonic()
        xdscp.start(timeout=args.timeout)
        up_s = time.monotonic() - t0
        until_all(envoys, lambda e: e.gauge("control_plane.connected_state") == 1, args.timeout, "reconnected")
        back_s = time.monotonic() - t0
        time.sleep(5.0)  # anything the restart would push has come by now
        after = [e.config_churn(hosts) for e in envoys]
        churned = sum(1 for b, a in zip(before, after, strict=True) if a != b)
        moved = sorted({k for b, a in zip(before, after, strict=True) for k in a if a[k] != b.get(k)})
        held = sum(1 for e in envoys if clusters_held(e) == USED + 1)
        print(f"{services:>9} fleet: restart (kill -9): ready in {up_s:.1f} s, every Envoy reconnected in "
              f"{back_s:.1f} s; {churned} of {len(envoys)} saw a change "
              f"(cluster, listener, route configuration or membership); "
              f"{held} still hold their {USED} services; what moved: {', '.join(moved) or 'nothing'}", flush=True)
    finally:
        for e in envoys:
            e.stop()
        xdscp.stop()


if __name__ == "__main__":
    main()
