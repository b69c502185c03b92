"""The embedded registry end to end, with real peers everywhere a user has them.

The real Nacos client (nacos-sdk-python 1.0, which speaks the v1 HTTP Open API)
registers, heart-beats and deregisters. ``xdscp serve`` runs as a child process with
an embedded source (short timeouts, so the test is quick). A real Envoy routes to
real upstream HTTP servers. State is read from Envoy's admin API, traffic from
response bodies.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacos
import pytest

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.traffic import count_responses
from xdscp.local.upstream import NamedUpstream

from waiting import until

pytestmark = pytest.mark.envoy
logging.getLogger("nacos").setLevel(logging.WARNING)

UNHEALTHY_AFTER, REMOVE_AFTER = 1.0, 2.0
CHECK_INTERVAL, CHECK_TIMEOUT, THRESHOLD = 0.2, 0.2, 2


@dataclass
class Stack:
    upstreams: dict[str, NamedUpstream]
    xdscp: XdscpProcess
    envoy: EnvoyProcess
    nacos: nacos.NacosClient

    def port(self, name: str) -> int:
        return self.upstreams[name].port

    def hosts(self) -> dict[str, dict[str, Any]]:
        return self.envoy.cluster_hosts("echo")

    def health(self, name: str) -> str | None:
        return self.hosts().get(f"127.0.0.1:{self.port(name)}", {}).get("eds_health")

    def requests(self, n: int = 30) -> Counter[str]:
        return count_responses(self.xdscp.listener_port, "echo", n)

    def register(self, name: str, *, ephemeral: bool, beat_every: float | None = None) -> None:
        assert self.nacos.add_naming_instance("echo", "127.0.0.1", self.port(name), ephemeral=ephemeral,
                                              heartbeat_interval=beat_every)

    def deregister(self, name: str, *, ephemeral: bool) -> None:
        assert self.nacos.remove_naming_instance("echo", "127.0.0.1", self.port(name), ephemeral=ephemeral)

    def restart_upstream(self, name: str) -> None:
        self.upstreams[name] = NamedUpstream(name, port=self.port(name)).start()


def start_xdscp(tmp_path: Path, listener_port: int | None = None) -> XdscpProcess:
    return XdscpProcess(tmp_path, listener_port=listener_port, sources=[{
        "kind": "embedded", "name": "embedded", "database": str(tmp_path / "registry.db"),
        "heartbeat_unhealthy_after": UNHEALTHY_AFTER, "heartbeat_remove_after": REMOVE_AFTER,
        "expiry_interval": 0.05,
        "instance_check": {"type": "tcp", "interval": CHECK_INTERVAL, "timeout": CHECK_TIMEOUT,
                           "healthy_threshold": THRESHOLD, "unhealthy_threshold": THRESHOLD},
    }])


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    upstreams = {n: NamedUpstream(n).start() for n in ("alpha", "beta", "gamma")}
    xdscp = start_xdscp(tmp_path)
    envoy: EnvoyProcess | None = None
    client: nacos.NacosClient | None = None
    try:
        xdscp.start()
        envoy = EnvoyProcess(REPO_ENVOY_DIR / "bootstrap-ads.yaml", xdscp.xds_address, tmp_path).start()
        client = nacos.NacosClient(xdscp.admin_address, namespace="")
        yield Stack(upstreams, xdscp, envoy, client)
    finally:
        if client is not None:
            for task in client.heartbeats.values():
                task.stop()
        if envoy is not None:
            envoy.stop()
        xdscp.stop()
        for u in upstreams.values():
            u.stop()


def test_traffic_follows_nacos_registrations(stack: Stack) -> None:
    for name in ("alpha", "beta", "gamma"):
        stack.register(name, ephemeral=True, beat_every=0.2)
    until(lambda: len(stack.hosts()) == 3, what="three hosts in Envoy")
    seen = stack.requests(30)
    assert set(seen) == {"alpha", "beta", "gamma"} and max(seen.values()) - min(seen.values()) <= 1
    listed = stack.nacos.list_naming_instance("echo")
    assert sorted(h["port"] for h in listed["hosts"]) == sorted(u.port for u in stack.upstreams.values())

    stack.deregister("beta", ephemeral=True)
    until(lambda: len(stack.hosts()) == 2, timeout=15, what="beta gone from Envoy")
    assert set(stack.requests(30)) == {"alpha", "gamma"}


def test_ephemeral_instance_whose_heartbeats_stop_loses_traffic(stack: Stack) -> None:
    stack.register("alpha", ephemeral=True, beat_every=0.2)
    stack.register("beta", ephemeral=True, beat_every=0.2)
    until(lambda: len(stack.hosts()) == 2, what="two hosts")
    stack.nacos.heartbeats[f"echo#127.0.0.1#{stack.port('beta')}"].stop()  # beta's process "hangs"
    until(lambda: stack.health("beta") == "UNHEALTHY", timeout=UNHEALTHY_AFTER + 2, what="beta unhealthy")
    assert stack.requests(30) == Counter({"alpha": 30})
    until(lambda: stack.health("beta") is None, timeout=REMOVE_AFTER + 2, what="beta removed")
    assert stack.requests(10) == Counter({"alpha": 10})


def test_persistent_instance_is_health_checked_off_and_back_on(stack: Stack) -> None:
    stack.register("alpha", ephemeral=False)
    stack.register("beta", ephemeral=False)
    until(lambda: len(stack.hosts()) == 2, what="two hosts")
    assert set(stack.requests(30)) == {"alpha", "beta"}

    stack.upstreams["beta"].stop()  # the upstream process dies; nobody deregisters it
    until(lambda: stack.health("beta") == "UNHEALTHY", timeout=5, what="beta failed its checks")
    assert stack.requests(30) == Counter({"alpha": 30})

    stack.restart_upstream("beta")
    until(lambda: stack.health("beta") == "HEALTHY", timeout=5, what="beta passed its checks again")
    assert set(stack.requests(30)) == {"alpha", "beta"}


def test_deregistering_the_last_persistent_instance_gives_503(stack: Stack) -> None:
    # The regression test for the incumbents' bug: the gateway kept routing to it for 30 minutes.
    # How fast is bench/embedded.py's figure; here the verdict is only that it happens.
    stack.register("alpha", ephemeral=False)
    until(lambda: len(stack.hosts()) == 1, what="alpha in Envoy")
    assert stack.requests(5) == Counter({"alpha": 5})
    started = time.monotonic()
    stack.deregister("alpha", ephemeral=False)
    until(lambda: stack.requests(1) == Counter({"HTTP 503": 1}), timeout=15, what="503 from Envoy")
    print(f"last instance deregistered -> 503 from Envoy: {time.monotonic() - started:.3f} s")
    assert stack.hosts() == {}
    served = stack.upstreams["alpha"].requests
    assert stack.requests(20) == Counter({"HTTP 503": 20})
    assert stack.upstreams["alpha"].requests == served  # from the first 503 on, nothing reaches it


def test_restart_brings_persistent_instances_back_without_churn(stack: Stack, tmp_path: Path) -> None:
    stack.register("alpha", ephemeral=False)
    stack.register("gamma", ephemeral=False)
    until(lambda: len(stack.hosts()) == 2 and stack.envoy.ready(), what="two hosts")

    before = until(lambda: (v := stack.xdscp.acked(in_sync=True)) and len(v) == 4 and v, timeout=30,
                   what="every type's last response ACKed")
    churn = stack.envoy.config_churn(["echo"])

    stack.xdscp.stop()
    assert set(stack.requests(20)) == {"alpha", "gamma"}  # Envoy keeps routing while xdscp is down
    stack.xdscp.start()
    # Envoy's reconnect backs off while xdscp is down: a slow restart can cost it seconds
    until(lambda: stack.xdscp.acked() == before, timeout=120, what="Envoy back on the same versions")
    assert stack.envoy.config_churn(["echo"]) == churn
    assert set(stack.requests(30)) == {"alpha", "gamma"}
