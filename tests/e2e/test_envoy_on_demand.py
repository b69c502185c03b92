"""On demand with a real Envoy (envoy/bootstrap-on-demand.yaml, ``listener.on_demand``):
Envoy starts with no service's cluster and learns each one on its first request, its
virtual host by Host (VHDS) and then its cluster (on-demand CDS), and follows every
change to what it learned, the last instance's deregistration included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.traffic import count_responses
from xdscp.local.upstream import NamedUpstream
from xdscp.sources.registry_file import write_registry_file

from waiting import until

pytestmark = pytest.mark.envoy


def clusters(envoy: EnvoyProcess) -> set[str]:
    return {c["name"] for c in json.loads(envoy.admin("/clusters?format=json")).get("cluster_statuses", [])}


def entry(name: str, *ups: NamedUpstream) -> dict[str, Any]:
    return {"name": name, "instances": [{"host": "127.0.0.1", "port": u.port} for u in ups]}


@pytest.mark.upstreams("alpha", "beta", "gamma")
def test_an_envoy_learns_each_service_on_its_first_request_and_follows_its_changes(
        tmp_path: Path, upstreams: list[NamedUpstream]) -> None:
    alpha, beta, gamma = upstreams
    registry = tmp_path / "registry.yaml"
    unused = [entry(f"unused-{i}", gamma) for i in range(50)]
    write_registry_file(registry, [entry("echo", alpha), entry("other", beta), *unused])
    xdscp = XdscpProcess(tmp_path, registry, listener={"on_demand": True}).start()
    envoy = EnvoyProcess(REPO_ENVOY_DIR / "bootstrap-on-demand.yaml", xdscp.xds_address, tmp_path).start()
    port = xdscp.listener_port
    try:
        until(lambda: envoy.ready(), timeout=30, what="Envoy ready with the listener")
        # Envoy's VHDS initialization ends on an answer inside the route configuration's
        # namespace; an empty one never counts (only its 15 s timer would end the wait)
        until(lambda: envoy.stats("http.ingress_http.rds.vhds.").get(
            "http.ingress_http.rds.vhds.ingress_http.update_success", 0) >= 1, timeout=60,
              what="VHDS initialized by xdscp's first answer, before any request")
        assert clusters(envoy) == {"xdscp"}  # no service's cluster before a request needs it
        until(lambda: count_responses(port, "echo", 3) == {"alpha": 3}, timeout=30, what="echo learned")
        until(lambda: count_responses(port, f"other:{port}", 3) == {"beta": 3}, timeout=30,
              what="other learned by a Host with a port")
        assert clusters(envoy) == {"xdscp", "echo", "other"}  # and none of the 50 unused
        until(lambda: count_responses(port, "nosuch", 2) == {"HTTP 404": 2}, timeout=30,
              what="no such service: 404, not a timeout")

        # registered after Envoy asked for it and was told there is none
        until(lambda: count_responses(port, "late", 1) == {"HTTP 404": 1}, timeout=30, what="late unknown")
        write_registry_file(registry, [entry("echo", alpha), entry("other", beta), entry("late", gamma), *unused])
        until(lambda: count_responses(port, "late", 3) == {"gamma": 3}, timeout=30, what="late reachable")

        # the last instance deregistered: no traffic to it at once, and none to anything else
        write_registry_file(registry, [entry("echo"), entry("other", beta), entry("late", gamma), *unused])
        until(lambda: count_responses(port, "echo", 3) == {"HTTP 503": 3}, timeout=30, what="echo drained")
        assert envoy.cluster_hosts("echo") == {}

        # a service deleted from the registry leaves the Envoy that held it
        write_registry_file(registry, [entry("echo"), entry("late", gamma), *unused])
        until(lambda: "other" not in clusters(envoy), timeout=30, what="other's cluster removed")
        until(lambda: count_responses(port, "other", 2) == {"HTTP 404": 2}, timeout=30, what="other gone")
        assert count_responses(port, "late", 2) == {"gamma": 2}

        # xdscp killed and restarted: Envoy resubscribes to what it holds, and only that, and
        # nothing it holds moves (Envoy names "*" for VHDS then: not the whole registry)
        before = until(lambda: (v := xdscp.acked(in_sync=True)) and len(v) == 5 and v, timeout=30,
                       what="every type's last response ACKed")
        churn = envoy.config_churn(["echo", "late"])
        xdscp.kill()
        assert count_responses(port, "late", 2) == {"gamma": 2}  # routing on meanwhile
        xdscp.start()
        # Envoy's reconnect backs off while xdscp is down: a slow restart can cost it seconds
        until(lambda: xdscp.acked() == before, timeout=120, what="Envoy back on the same versions")
        assert envoy.config_churn(["echo", "late"]) == churn
        assert clusters(envoy) == {"xdscp", "echo", "late"}
        assert count_responses(port, "nosuch", 1) == {"HTTP 404": 1}
        write_registry_file(registry, [entry("echo"), entry("late", gamma, beta), *unused])
        until(lambda: count_responses(port, "late", 20).keys() == {"gamma", "beta"}, timeout=30,
              what="a change after the restart reached the Envoy")
        assert clusters(envoy) == {"xdscp", "echo", "late"}
    finally:
        envoy.stop()
        xdscp.stop()


@pytest.mark.upstreams("alpha", "beta")
def test_on_demand_through_a_worker_process(tmp_path: Path, upstreams: list[NamedUpstream]) -> None:
    """With ``xds.workers``, an Envoy's stream may land on a worker, which serves what its
    relay mirrors of the owner: every virtual host, for it to answer by Host."""
    alpha, beta = upstreams
    registry = tmp_path / "registry.yaml"
    write_registry_file(registry, [entry("echo", alpha), *(entry(f"unused-{i}", beta) for i in range(20))])
    xdscp = XdscpProcess(tmp_path, registry, listener={"on_demand": True}, xds_settings={"workers": 2}).start()
    port = xdscp.listener_port
    envoy: EnvoyProcess | None = None
    try:
        until(lambda: xdscp.admin("/readyz")["workers"]["following"] == 1, timeout=60, what="the worker following")
        # Envoys until one's stream is on the worker: the owner lists only its own streams
        # (each Envoy lands on either process; twenty all on the owner: 2**-20).
        for i in range(20):
            envoy = EnvoyProcess(REPO_ENVOY_DIR / "bootstrap-on-demand.yaml", xdscp.xds_address, tmp_path,
                                 node_id=f"envoy-{i}").start()
            until(lambda e=envoy: e.gauge("control_plane.connected_state") == 1, timeout=30, what="connected")
            on_owner = {n["node_id"] for n in xdscp.admin("/debug/nodes")["nodes"]}
            if f"envoy-{i}" not in on_owner:
                break
            envoy.stop()
            envoy = None
        assert envoy is not None, "no Envoy's stream landed on the worker"
        until(lambda: count_responses(port, "echo", 3) == {"alpha": 3}, timeout=30, what="echo learned")
        assert clusters(envoy) == {"xdscp", "echo"}
        until(lambda: count_responses(port, "nosuch", 1) == {"HTTP 404": 1}, timeout=30, what="unknown: 404")
        write_registry_file(registry, [entry("echo"), entry("late", beta)])
        until(lambda: count_responses(port, "echo", 2) == {"HTTP 503": 2}, timeout=30, what="echo drained")
        until(lambda: count_responses(port, "late", 2) == {"beta": 2}, timeout=30, what="late reachable")
    finally:
        if envoy is not None:
            envoy.stop()
        xdscp.stop()
