"""Priority failover across sources with a real Envoy: a local source's instances take all
traffic while they can; a remote source (priority 1) takes it when they cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.traffic import count_responses
from xdscp.local.upstream import NamedUpstream
from xdscp.sources.registry_file import write_registry_file

from waiting import until

pytestmark = pytest.mark.envoy


@pytest.mark.upstreams("local", "remote")
def test_traffic_fails_over_to_the_remote_source_and_back(tmp_path: Path, upstreams: list[NamedUpstream]) -> None:
    local, remote = upstreams
    local_file, remote_file = tmp_path / "local.yaml", tmp_path / "remote.yaml"

    def write_local(healthy: bool) -> None:
        write_registry_file(local_file, [{"name": "echo", "instances": [
            {"host": "127.0.0.1", "port": local.port, "healthy": healthy}]}])

    write_local(True)
    write_registry_file(remote_file, [{"name": "echo", "instances": [{"host": "127.0.0.1", "port": remote.port}]}])
    xdscp = XdscpProcess(tmp_path, sources=[
        {"kind": "file", "name": "local", "path": str(local_file), "poll_interval": 0.02},
        {"kind": "file", "name": "remote", "path": str(remote_file), "poll_interval": 0.02, "priority": 1},
    ]).start()
    envoy = EnvoyProcess(REPO_ENVOY_DIR / "bootstrap-ads.yaml", xdscp.xds_address, tmp_path).start()
    try:
        until(lambda: len(envoy.cluster_hosts("echo")) == 2, what="both instances in Envoy")
        until(lambda: count_responses(xdscp.listener_port, "echo", 5) == {"local": 5}, what="traffic served")
        assert count_responses(xdscp.listener_port, "echo", 30) == {"local": 30}  # remote is standby only
        write_local(False)
        until(lambda: count_responses(xdscp.listener_port, "echo", 5) == {"remote": 5}, what="failover")
        assert count_responses(xdscp.listener_port, "echo", 30) == {"remote": 30}
        write_local(True)
        until(lambda: count_responses(xdscp.listener_port, "echo", 5) == {"local": 5}, what="failback")
    finally:
        envoy.stop()
        xdscp.stop()
