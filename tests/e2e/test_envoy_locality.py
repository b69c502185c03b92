"""Locality failover with real Envoys: two Envoys in zones z1 and z2 of one region, one
service with instances in z1, z2 and another region. Each Envoy keeps its traffic in its
own zone, fails over to the other zone of its region, then to the other region, and comes
back as its zone recovers: one control plane, an assignment per locality."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.envoy_bootstrap import render_bootstrap
from xdscp.local.ports import free_port
from xdscp.local.traffic import count_responses
from xdscp.local.upstream import NamedUpstream
from xdscp.sources.registry_file import write_registry_file

from waiting import until

pytestmark = pytest.mark.envoy

ZONES = {"z1": ("r1", "z1"), "z2": ("r1", "z2"), "far": ("r2", "z3")}


def zone_bootstrap(xds_address: str, region: str, zone: str, port: int) -> dict[str, Any]:
    """bootstrap-ads.yaml with node.locality set, and a listener of its own (no LDS) so two
    Envoys on one machine can each be asked: every request goes to the cluster ``echo``."""
    doc = render_bootstrap(REPO_ENVOY_DIR / "bootstrap-ads.yaml", xds_address)
    doc["node"]["locality"] = {"region": region, "zone": zone}
    del doc["dynamic_resources"]["lds_config"]
    doc["static_resources"]["listeners"] = [{
        "name": "probe",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                         ".HttpConnectionManager",
                "stat_prefix": "probe",
                "route_config": {"validate_clusters": False, "virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            }}]}],
    }]
    return doc


@pytest.mark.upstreams(*ZONES)
def test_each_envoy_keeps_traffic_in_its_zone_and_fails_over_by_distance(
        tmp_path: Path, upstreams: list[NamedUpstream]) -> None:
    registry = tmp_path / "registry.yaml"

    def write(unhealthy: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        write_registry_file(registry, [{"name": "echo", "locality_failover": True, "instances": [
            {"host": "127.0.0.1", "port": up.port, "region": ZONES[up.name][0], "zone": ZONES[up.name][1],
             "healthy": up.name not in unhealthy} for up in upstreams]}])

    write()
    xdscp = XdscpProcess(tmp_path, registry).start()
    ports = {"z1": free_port(), "z2": free_port()}
    envoys = {z: EnvoyProcess(zone_bootstrap(xdscp.xds_address, "r1", z, ports[z]), xdscp.xds_address, tmp_path,
                              node_id=f"envoy-{z}") for z in ports}
    try:
        for e in envoys.values():
            e.start()

        def answers(z: str, n: int = 10) -> dict[str, int]:
            return dict(count_responses(ports[z], "echo", n))

        def settle(expected: dict[str, str], what: str) -> None:
            for z, up in expected.items():
                until(lambda z=z, up=up: answers(z, 5) == {up: 5}, timeout=20, what=f"{what}: envoy-{z} -> {up}")
            for z, up in expected.items():  # and it stays there: every request, not most
                assert answers(z, 30) == {up: 30}, (z, what)

        settle({"z1": "z1", "z2": "z2"}, "each in its own zone")
        write({"z1"})
        settle({"z1": "z2", "z2": "z2"}, "z1 down: the region's other zone")
        write({"z1", "z2"})
        settle({"z1": "far", "z2": "far"}, "the region down: the other region")
        write({"z2"})
        settle({"z1": "z1", "z2": "z1"}, "z1 back, z2 still down: envoy-z2 back to its region")
        write()
        settle({"z1": "z1", "z2": "z2"}, "all back")
        nodes = xdscp.admin("/debug/nodes")["nodes"]
        assert sorted(n["locality"] for n in nodes) == ["r1/z1", "r1/z2"], nodes
    finally:
        for e in envoys.values():
            e.stop()
        xdscp.stop()
