"""Gray release with a real Envoy: a header sends requests to the canary subset, and a
weighted split shares the rest between stable and canary instances."""

from __future__ import annotations

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


@pytest.mark.upstreams("stable", "canary")
def test_header_route_and_weighted_split_to_subsets(tmp_path: Path, upstreams: list[NamedUpstream]) -> None:
    stable, canary = upstreams
    registry = tmp_path / "registry.yaml"

    def write(gray: dict[str, Any]) -> None:
        write_registry_file(registry, [{"name": "echo", "gray": gray, "instances": [
            {"host": "127.0.0.1", "port": stable.port, "metadata": {"version": "v1"}},
            {"host": "127.0.0.1", "port": canary.port, "metadata": {"version": "v2"}}]}])

    write({"stable": "v1", "canary": "v2", "header": "x-canary", "header_value": "yes"})
    xdscp = XdscpProcess(tmp_path, registry).start()
    envoy = EnvoyProcess(REPO_ENVOY_DIR / "bootstrap-ads.yaml", xdscp.xds_address, tmp_path).start()
    port = xdscp.listener_port
    try:
        until(lambda: count_responses(port, "echo", 5) == {"stable": 5}, what="stable traffic")
        assert count_responses(port, "echo", 40) == {"stable": 40}  # no header, weight 0: stable only
        assert count_responses(port, "echo", 40, {"x-canary": "yes"}) == {"canary": 40}
        assert count_responses(port, "echo", 20, {"x-canary": "no"}) == {"stable": 20}  # exact value only
        write({"stable": "v1", "canary": "v2", "canary_weight": 50})
        until(lambda: len(count_responses(port, "echo", 20)) == 2, what="a split between both")
        seen = count_responses(port, "echo", 400)
        assert set(seen) == {"stable", "canary"} and 120 <= seen["canary"] <= 280, seen  # 50% +- 7 sigma
        write({"stable": "v1", "canary": "v2", "canary_weight": 100})
        until(lambda: count_responses(port, "echo", 20) == {"canary": 20}, what="all to canary")
    finally:
        envoy.stop()
        xdscp.stop()
