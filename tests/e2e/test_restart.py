"""kill -9 of xdscp with a real Envoy connected (SotW and Delta ADS): Envoy keeps routing while
xdscp is gone, and the restarted xdscp (same registry) causes no churn: no cluster, listener
or route configuration of Envoy's changes, nor the cluster's membership, and Delta resends
nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.traffic import count_responses
from xdscp.local.upstream import NamedUpstream

from plane import write_registry
from waiting import until

pytestmark = pytest.mark.envoy


@pytest.mark.parametrize("mode", ["ads", "delta"])
@pytest.mark.upstreams("alpha", "beta")
def test_kill_9_and_restart_cause_no_churn(tmp_path: Path, upstreams: list[NamedUpstream], mode: str) -> None:
    registry = tmp_path / "registry.yaml"
    write_registry(registry, [{"name": "echo", "instances": [{"host": "127.0.0.1", "port": u.port}
                                                             for u in upstreams]}])
    xdscp = XdscpProcess(tmp_path, registry).start()
    envoy = EnvoyProcess(REPO_ENVOY_DIR / f"bootstrap-{mode}.yaml", xdscp.xds_address, tmp_path).start()
    try:
        until(lambda: len(envoy.cluster_hosts("echo")) == 2 and envoy.ready(), what="Envoy warm")

        before = until(lambda: (v := xdscp.acked(in_sync=True)) and len(v) == 4 and v, timeout=30,
                       what="every type's last response ACKed")
        churn = envoy.config_churn(["echo"])

        xdscp.kill()
        assert set(count_responses(xdscp.listener_port, "echo", 20)) == {"alpha", "beta"}  # routing on
        until(lambda: envoy.stats("control_plane.connected_state")["control_plane.connected_state"] == 0,
              what="Envoy noticed")
        xdscp.start()
        until(lambda: xdscp.acked() == before, timeout=120, what="Envoy back on the same versions")

        assert envoy.config_churn(["echo"]) == churn
        assert set(count_responses(xdscp.listener_port, "echo", 30)) == {"alpha", "beta"}
        # The restarted server resumed from what Envoy said it held, sending it nothing again:
        # Delta every type (initial_resource_versions); SotW the full-state types, CDS and LDS
        # (an EDS/RDS version_info cannot say which names it covers, so those are resent,
        # unchanged, which moved nothing above).
        restarted = xdscp.log_text().split("xdscp.started")[-1]
        assert restarted.count("event=xds.resume") == (4 if mode == "delta" else 2), restarted[-3000:]
    finally:
        envoy.stop()
        xdscp.stop()
