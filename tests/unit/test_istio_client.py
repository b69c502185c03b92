"""An Istio-like MCP client (tests/istio_client.py: pkg/adsc's request set and rules) against
xdscp: it syncs, and gets every service as a ServiceEntry with a DestinationRule and, for a
gray release, a VirtualService, under the GVKs current Istio asks for and the older ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from xdscp.config import McpConfig
from xdscp.istio_api.networking.v1alpha3 import destination_rule_pb2

from istio_client import ISTIO_COLLECTIONS, OLDER_ISTIO_COLLECTIONS, IstioMcpClient
from plane import Plane, running_plane, service

SE = "networking.istio.io/v1/ServiceEntry"
DR = "networking.istio.io/v1/DestinationRule"
VS = "networking.istio.io/v1/VirtualService"
ECHO = "istio-system/echo.default-group.public.xdscp"
API = "istio-system/api.payments.prod.xdscp"
LB = destination_rule_pb2.LoadBalancerSettings


def registry(canary_weight: int = 20, api_lb: str = "RING_HASH", echo_weight: float = 1.0) -> list[dict[str, Any]]:
    echo = service("echo", 9001, 9002, gray={"key": "version", "stable": "v1", "canary": "v2", "header": "X-Canary",
                                             "header_value": "yes", "canary_weight": canary_weight})
    echo["instances"][0].update(metadata={"version": "v1"}, weight=echo_weight)
    echo["instances"][1]["metadata"] = {"version": "v2"}
    api = service("api", 9101, group="payments", namespace="prod", lb_policy=api_lb, connect_timeout=2.5,
                  hash_policy={"header": "X-User"}, panic_threshold=30,
                  outlier_detection={"consecutive_5xx": 3, "consecutive_gateway_failure": 2, "interval": 5,
                                     "base_ejection_time": 15, "max_ejection_percent": 50})
    return [echo, api]


@pytest.fixture
async def mcp_plane(tmp_path: Path) -> AsyncIterator[Plane]:
    async with running_plane(tmp_path, registry(), mcp=McpConfig(enabled=True)) as plane:
        yield plane


async def synced_client(plane: Plane, collections: tuple[str, ...] = ISTIO_COLLECTIONS) -> IstioMcpClient:
    client = await IstioMcpClient(plane.target, collections).start()
    await client.wait(lambda: client.synced, what="every collection answered")
    return client


async def test_istio_syncs_and_gets_services_with_their_traffic_rules(mcp_plane: Plane) -> None:
    client = await synced_client(mcp_plane)
    try:
        assert client.mesh_config_responses == 1 and not client.invalid
        served = {c for c in ISTIO_COLLECTIONS if client.store[c]}
        assert served == {SE, DR, VS}  # every other collection answered, empty
        assert set(client.store[SE]) == set(client.store[DR]) == {ECHO, API}
        assert set(client.store[VS]) == {ECHO}  # a VirtualService for the gray release only

        api = client.store[DR][API].spec
        assert api.host == "api.payments.prod.xdscp"
        ch = api.traffic_policy.load_balancer.consistent_hash
        assert ch.http_header_name == "x-user" and ch.HasField("ring_hash")
        assert api.traffic_policy.connection_pool.tcp.connect_timeout.ToMilliseconds() == 2500
        od = api.traffic_policy.outlier_detection
        assert (od.consecutive_5xx_errors.value, od.consecutive_gateway_errors.value, od.interval.seconds,
                od.base_ejection_time.seconds, od.max_ejection_percent, od.min_health_percent) == (3, 2, 5, 15, 50, 30)
        assert not api.subsets

        echo = client.store[DR][ECHO].spec
        assert echo.traffic_policy.load_balancer.simple == LB.ROUND_ROBIN
        assert [(s.name, dict(s.labels)) for s in echo.subsets] == [("stable", {"version": "v1"}),
                                                                     ("canary", {"version": "v2"})]
        # the subsets select endpoints by the labels the ServiceEntry gives them
        labels = {e.labels["version"] for e in client.store[SE][ECHO].spec.endpoints}
        assert labels == {"v1", "v2"}

        vs = client.store[VS][ECHO].spec
        assert list(vs.hosts) == ["echo.default-group.public.xdscp"]
        header, split = vs.http
        assert [dict(m.headers) for m in header.match] == [{"x-canary": header.match[0].headers["x-canary"]}]
        assert header.match[0].headers["x-canary"].exact == "yes"
        assert [(r.destination.host, r.destination.subset) for r in header.route] == [
            ("echo.default-group.public.xdscp", "canary")]
        assert [(r.destination.subset, r.weight) for r in split.route] == [("stable", 80), ("canary", 20)]
        assert client.store[VS][ECHO].annotations["xdscp.io/service-key"] == "public/DEFAULT_GROUP/echo"
    finally:
        await client.close()


async def test_a_registry_change_gives_new_versions_to_exactly_the_resources_it_touches(mcp_plane: Plane) -> None:
    client = await synced_client(mcp_plane)
    try:
        def versions() -> dict[tuple[str, str], str]:
            return {(c, n): v for c in (SE, DR, VS) for n, v in client.versions(c).items()}

        async def change(services: list[dict[str, Any]], what: str) -> set[tuple[str, str]]:
            before, applied = versions(), dict(client.applied)
            mcp_plane.write(services)
            await client.wait(lambda: client.applied != applied, what=what)
            after = versions()
            assert set(after) == set(before)
            touched = {k for k in after if after[k] != before[k]}
            assert touched == {k for k in client.applied if client.applied[k] != applied.get(k, 0)}
            return touched

        assert await change(registry(echo_weight=3), "an instance's weight") == {(SE, ECHO)}
        assert await change(registry(echo_weight=3, canary_weight=50), "the canary weight") == {(VS, ECHO)}
        assert await change(registry(echo_weight=3, canary_weight=50, api_lb="LEAST_REQUEST"),
                            "the api's LB policy") == {(DR, API)}
        assert client.store[DR][API].spec.traffic_policy.load_balancer.simple == LB.LEAST_REQUEST
    finally:
        await client.close()


async def test_older_istio_gets_the_same_resources_and_versions_under_its_gvks(mcp_plane: Plane) -> None:
    current = await synced_client(mcp_plane)
    older = await synced_client(mcp_plane, OLDER_ISTIO_COLLECTIONS)
    try:
        for kind in ("ServiceEntry", "DestinationRule", "VirtualService", "WorkloadEntry"):
            new, old = f"networking.istio.io/v1/{kind}", f"networking.istio.io/v1alpha3/{kind}"
            assert older.versions(old) == current.versions(new), kind
        assert older.versions("networking.istio.io/v1alpha3/ServiceEntry")  # not two empty collections
        assert older.responses["networking.istio.io/v1alpha3/ServiceEntry"] == 1
    finally:
        await older.close()
        await current.close()


async def test_a_gray_key_istio_cannot_select_is_served_without_subsets(tmp_path: Path) -> None:
    echo = service("echo", 9001, gray={"key": "release track", "stable": "a", "canary": "b"})
    async with running_plane(tmp_path, [echo], mcp=McpConfig(enabled=True)) as plane:
        client = await synced_client(plane)
        try:
            assert not client.store[DR][ECHO].spec.subsets and not client.store[VS]
        finally:
            await client.close()
