"""Two xdscp replicas on one registry, both listed in Envoy's bootstrap: killing the one Envoy
is connected to moves Envoy to the other with no traffic loss and no churn (the replicas
agree on every version), and changes keep flowing through the survivor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.envoy_bootstrap import render_bootstrap
from xdscp.local.traffic import count_responses
from xdscp.local.upstream import NamedUpstream

from plane import write_registry
from waiting import until

pytestmark = pytest.mark.envoy


def two_replica_bootstrap(a: XdscpProcess, b: XdscpProcess) -> dict[str, Any]:
    """envoy/bootstrap-ads.yaml with both replicas as endpoints of its xdscp cluster."""
    doc = render_bootstrap(REPO_ENVOY_DIR / "bootstrap-ads.yaml", a.xds_address)
    xds = next(c for c in doc["static_resources"]["clusters"] if c["name"] == "xdscp")
    endpoint = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    second = yaml.safe_load(yaml.safe_dump(endpoint))
    second["endpoint"]["address"]["socket_address"]["port_value"] = b.xds_port
    xds["load_assignment"]["endpoints"][0]["lb_endpoints"].append(second)
    return dict(doc)


@pytest.mark.upstreams("alpha", "beta", "gamma")
def test_envoy_fails_over_between_replicas_without_churn(tmp_path: Path, upstreams: list[NamedUpstream]) -> None:
    registry = tmp_path / "registry.yaml"
    instances = [{"host": "127.0.0.1", "port": u.port} for u in upstreams]
    write_registry(registry, [{"name": "echo", "instances": instances}])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = XdscpProcess(tmp_path / "a", registry, name="a").start()
    # The same config, so the same resources and versions: the listener port is part of it.
    b = XdscpProcess(tmp_path / "b", registry, listener_port=a.listener_port, name="b").start()
    envoy = EnvoyProcess(two_replica_bootstrap(a, b), a.xds_address, tmp_path).start()
    try:
        until(lambda: len(envoy.cluster_hosts("echo")) == 3 and envoy.ready(), what="Envoy warm")
        serving = a if a.admin("/debug/nodes")["nodes"] else b
        other = b if serving is a else a
        stats = envoy.stats("cluster")
        cds, membership = stats["cluster_manager.cds.update_success"], stats["cluster.echo.membership_change"]

        serving.kill()
        assert set(count_responses(a.listener_port, "echo", 30)) == {"alpha", "beta", "gamma"}  # no loss
        until(lambda: other.admin("/debug/nodes")["nodes"], timeout=20, what="Envoy on the other replica")
        until(lambda: envoy.stats("control_plane.connected_state")["control_plane.connected_state"] == 1,
              what="connected again")
        stats = envoy.stats("cluster")
        assert stats["cluster_manager.cds.update_success"] == cds  # same versions: nothing re-applied
        assert stats["cluster.echo.membership_change"] == membership

        write_registry(registry, [{"name": "echo", "instances": instances[:2]}])  # the survivor pushes
        until(lambda: len(envoy.cluster_hosts("echo")) == 2, what="change through the other replica")
        assert set(count_responses(a.listener_port, "echo", 30)) == {"alpha", "beta"}
    finally:
        envoy.stop()
        a.stop()
        b.stop()
