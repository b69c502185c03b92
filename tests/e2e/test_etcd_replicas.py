"""Three ``xdscp serve`` replicas sharing the embedded registry through a real etcd
(``store: etcd``), a real Envoy listing all three in its bootstrap.

Registrations are spread over the replicas while the one Envoy streams from is killed;
at the end every replica serves the same versions, Envoy holds exactly what was
registered, and nothing that was acknowledged is lost. Then etcd goes away for 10 s:
the replicas keep serving their last view, and catch up when it returns.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.envoy_bootstrap import render_bootstrap
from xdscp.local.etcd import EtcdServer, etcd_binary
from xdscp.local.traffic import count_responses
from xdscp.local.upstream import NamedUpstream

from upstreams import running_upstreams
from waiting import until

pytestmark = [pytest.mark.envoy,
              pytest.mark.skipif(etcd_binary() is None, reason="etcd not installed: make sysdeps installs etcd-server")]

BULK_SERVICES = 10
BULK_INSTANCES = 300


def replica_source(etcd: EtcdServer) -> dict[str, Any]:
    return {"kind": "embedded", "name": "embedded", "store": "etcd",
            "etcd": {"endpoints": [etcd.url], "timeout": 2.0, "leader_ttl": 2},
            "instance_check": {"enabled": False}}


def bootstrap_listing(replicas: list[XdscpProcess]) -> dict[str, Any]:
    """envoy/bootstrap-ads.yaml with every replica as an endpoint of its xdscp cluster."""
    doc = render_bootstrap(REPO_ENVOY_DIR / "bootstrap-ads.yaml", replicas[0].xds_address)
    xds = next(c for c in doc["static_resources"]["clusters"] if c["name"] == "xdscp")
    endpoints = xds["load_assignment"]["endpoints"][0]["lb_endpoints"]
    for r in replicas[1:]:
        more = yaml.safe_load(yaml.safe_dump(endpoints[0]))
        more["endpoint"]["address"]["socket_address"]["port_value"] = r.xds_port
        endpoints.append(more)
    return dict(doc)


def call(replica: XdscpProcess, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    """One registration API call; the HTTP status, or 0 if the replica cannot be reached."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{replica.admin_address}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


@dataclass
class Cluster:
    etcd: EtcdServer
    replicas: list[XdscpProcess]
    envoy: EnvoyProcess
    upstreams: list[NamedUpstream]

    def serving(self) -> XdscpProcess:
        """The replica Envoy streams from."""
        return next(r for r in self.replicas if r.admin("/debug/nodes")["nodes"])

    def alive(self) -> list[XdscpProcess]:
        return [r for r in self.replicas if r.running]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    etcd = EtcdServer(tmp_path).start()
    # Envoy's listener port, held until Envoy starts: no port picked meanwhile (a replica's,
    # Envoy's admin) can be the same one.
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    listener_port = reserved.getsockname()[1]
    replicas: list[XdscpProcess] = []
    envoy: EnvoyProcess | None = None
    try:
        with running_upstreams("alpha", "beta", "gamma") as ups:
            for name in ("a", "b", "c"):
                (tmp_path / name).mkdir()
                replicas.append(XdscpProcess(tmp_path / name, sources=[replica_source(etcd)],
                                             listener_port=listener_port, name=name).start())
            # echo's instances registered one per replica
            for r, u in zip(replicas, ups, strict=True):
                assert call(r, "POST", "/v1/services/echo/instances",
                            {"host": "127.0.0.1", "port": u.port, "ephemeral": False}) == 201
            envoy = EnvoyProcess(bootstrap_listing(replicas), replicas[0].xds_address, tmp_path)
            reserved.close()
            envoy.start()
            until(lambda: envoy is not None and len(envoy.cluster_hosts("echo")) == 3 and envoy.ready(),
                  timeout=30, what="Envoy warm with echo's three instances")
            until(lambda: set(count_responses(listener_port, "echo", 30)) == {"alpha", "beta", "gamma"},
                  timeout=30, what="traffic through Envoy's listener to echo's three instances")
            yield Cluster(etcd, replicas, envoy, ups)
    finally:
        reserved.close()
        if envoy is not None:
            envoy.stop()
        for r in replicas:
            r.stop()
        etcd.stop()


def served_versions(replica: XdscpProcess) -> dict[str, str]:
    return {url: t["version"] for url, t in replica.admin("/debug/config_dump")["types"].items()}


def registry_view(replica: XdscpProcess) -> dict[str, set[int]]:
    services = replica.admin("/debug/registry?source=embedded")["services"]
    return {s["name"]: {i["port"] for i in s["instances"]} for s in services if s["name"].startswith("bulk-")}


def test_registrations_spread_over_replicas_survive_killing_the_serving_one(cluster: Cluster) -> None:
    envoy = cluster.envoy
    victim = cluster.serving()
    acked: dict[str, set[int]] = {f"bulk-{i}": set() for i in range(BULK_SERVICES)}
    lock = threading.Lock()
    done = threading.Semaphore(0)

    def register(n: int) -> None:
        name, port = f"bulk-{n % BULK_SERVICES}", 20000 + n
        body = {"host": "127.0.0.1", "port": port, "ephemeral": False}
        # a client behind a load balancer: a replica that is down or answers 503 gets a retry elsewhere
        for attempt in range(6):
            replica = cluster.replicas[(n + attempt) % len(cluster.replicas)]
            if call(replica, "POST", f"/v1/services/{name}/instances", body) == 201:
                with lock:
                    acked[name].add(port)
                break
        if n % 5 == 0:  # some go again, through another replica
            for attempt in range(6):
                replica = cluster.replicas[(n + 1 + attempt) % len(cluster.replicas)]
                if call(replica, "DELETE", f"/v1/services/{name}/instances/127.0.0.1:{port}") in (200, 404):
                    with lock:
                        acked[name].discard(port)
                    break
        done.release()

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(register, n) for n in range(BULK_INSTANCES)]
        for _ in range(BULK_INSTANCES // 3):
            done.acquire()
        victim.kill()  # mid-run, the replica Envoy streams from
        # traffic goes on: Envoy keeps its config while it moves to another replica
        try:
            spread = set(count_responses(victim.listener_port, "echo", 30))
        except OSError as e:
            raise AssertionError(f"no traffic through Envoy after the kill ({e}); Envoy's log:\n"
                                 f"{envoy.log_tail(40)}") from None
        assert spread == {"alpha", "beta", "gamma"}
        for f in futures:
            f.result()
    elapsed = time.monotonic() - started

    expected = dict(acked)
    assert sum(len(p) for p in acked.values()) == BULK_INSTANCES - BULK_INSTANCES // 5  # every call got through
    survivors = cluster.alive()
    until(lambda: all(registry_view(r) == expected for r in survivors), timeout=20,
          what="every survivor holds exactly what was acknowledged")
    until(lambda: any(r.admin("/debug/nodes")["nodes"] for r in survivors), timeout=30,
          what="Envoy on another replica")
    for name, ports in expected.items():
        until(lambda name=name, ports=ports: {int(a.rsplit(":", 1)[1]) for a in envoy.cluster_hosts(name)} == ports,
              timeout=20, what=f"Envoy's {name} equals the registry")
    victim.start()  # back: it lists etcd and serves the same state and versions
    until(lambda: registry_view(victim) == expected, timeout=20, what="the restarted replica caught up")
    until(lambda: len({json.dumps(served_versions(r), sort_keys=True) for r in cluster.replicas}) == 1,
          timeout=20, what="identical versions on all three replicas")
    assert set(count_responses(victim.listener_port, "echo", 30)) == {"alpha", "beta", "gamma"}
    print(f"\n[etcd replicas] {BULK_INSTANCES} registrations + {BULK_INSTANCES // 5} deregistrations over "
          f"3 replicas, one killed mid-run: {elapsed:.2f} s")


def test_etcd_down_for_10s_replicas_keep_serving_and_catch_up(cluster: Cluster) -> None:
    envoy = cluster.envoy
    a = cluster.replicas[0]
    before = [served_versions(r) for r in cluster.replicas]
    cluster.etcd.stop()
    outage = time.monotonic()
    until(lambda: all(r.admin("/debug/sources")["sources"][0]["last_error"] for r in cluster.replicas),
          timeout=15, what="every replica noticed")
    # writes are refused, clearly, and nothing else changes
    assert call(a, "POST", "/v1/services/echo/instances", {"host": "127.0.0.1", "port": 1, "ephemeral": False}) == 503
    while time.monotonic() - outage < 10:
        assert set(count_responses(a.listener_port, "echo", 9)) == {"alpha", "beta", "gamma"}
        time.sleep(1)
    assert [served_versions(r) for r in cluster.replicas] == before
    assert all(r.admin("/readyz")["ready"] for r in cluster.replicas)  # still serving the last view
    cluster.etcd.start()
    back = time.monotonic()
    until(lambda: not any(r.admin("/debug/sources")["sources"][0]["last_error"] for r in cluster.replicas),
          timeout=10, what="every replica follows etcd again")
    print(f"\n[etcd replicas] etcd away {back - outage:.1f} s; all three replicas following it again "
          f"{time.monotonic() - back:.2f} s after it answered")
    assert [served_versions(r) for r in cluster.replicas] == before

    # then the replica Envoy streams from dies: Envoy moves, re-applies nothing, loses nothing
    stats = envoy.stats("cluster")
    victim = cluster.serving()
    victim.kill()
    assert set(count_responses(a.listener_port, "echo", 30)) == {"alpha", "beta", "gamma"}
    survivors = cluster.alive()
    until(lambda: any(r.admin("/debug/nodes")["nodes"] for r in survivors), timeout=30,
          what="Envoy on another replica")
    after = envoy.stats("cluster")
    assert after["cluster_manager.cds.update_success"] == stats["cluster_manager.cds.update_success"]
    assert after["cluster.echo.membership_change"] == stats["cluster.echo.membership_change"]

    gamma = cluster.upstreams[2].port
    assert call(survivors[-1], "DELETE", f"/v1/services/echo/instances/127.0.0.1:{gamma}") == 200
    until(lambda: len(envoy.cluster_hosts("echo")) == 2, timeout=20, what="a change after the outage reaches Envoy")
    until(lambda: all(set(registry_view_all(r)["echo"]) == {u.port for u in cluster.upstreams[:2]}
                      for r in survivors), timeout=20, what="every replica caught up")
    assert set(count_responses(a.listener_port, "echo", 30)) == {"alpha", "beta"}


def registry_view_all(replica: XdscpProcess) -> dict[str, list[int]]:
    services = replica.admin("/debug/registry?source=embedded")["services"]
    return {s["name"]: [i["port"] for i in s["instances"]] for s in services}
