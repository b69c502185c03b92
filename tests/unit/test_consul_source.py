"""``kind: consul`` against a test server that follows Consul's documented HTTP API
(consul_server.py: Consul itself cannot be installed on this machine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from xdscp.config import ConsulSourceConfig
from xdscp.model.service import ServiceKey

from consul_server import ConsulTestServer
from plane import Plane, running_plane
from waiting import eventually

TOKEN = "b1gs33cr3t"


def instances(plane: Plane, name: str = "web") -> list[tuple[int, bool, float]]:
    svc = plane.cp.registry.services.get(ServiceKey("public", "DEFAULT_GROUP", name))
    return [] if svc is None else sorted((i.port, i.healthy, i.weight) for i in svc.instances)


@pytest.fixture
async def consul() -> AsyncIterator[ConsulTestServer]:
    server = await ConsulTestServer(token=TOKEN).start()
    e = ConsulTestServer.entry
    server.services["web"] = [e("web", "127.0.0.1", 9001, weight=3), e("web", "127.0.0.1", 9002)]
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def consul_plane(tmp_path: Path, consul: ConsulTestServer, **settings: object) -> AsyncIterator[Plane]:
    async with running_plane(tmp_path, None, sources=[ConsulSourceConfig(
            kind="consul", name="consul", address=consul.url, **settings)]) as plane:  # type: ignore[arg-type]
        yield plane


async def test_blocking_queries_follow_instances_checks_and_services(tmp_path: Path,
                                                                      consul: ConsulTestServer) -> None:
    async with consul_plane(tmp_path, consul, token=TOKEN) as plane:
        e = ConsulTestServer.entry
        assert instances(plane) == [(9001, True, 3.0), (9002, True, 1.0)]
        await eventually(lambda: consul.blocked_queries >= 2, what="queries parked on the index")
        consul.services["web"] = [e("web", "127.0.0.1", 9001, weight=3),
                                  e("web", "127.0.0.1", 9002, status="critical")]
        consul.bump()
        await eventually(lambda: instances(plane) == [(9001, True, 3.0), (9002, False, 1.0)],
                         what="critical check -> unhealthy")
        consul.services["api"] = [e("api", "127.0.0.1", 9101, meta={"version": "v2"})]
        consul.bump()
        await eventually(lambda: instances(plane, "api") == [(9101, True, 1.0)], what="new service")
        api = plane.cp.registry.services[ServiceKey("public", "DEFAULT_GROUP", "api")]
        assert api.instances[0].metadata == {"version": "v2"}
        del consul.services["api"]
        consul.bump()
        await eventually(lambda: instances(plane, "api") == [], what="service deregistered")


@pytest.mark.parametrize(("warning_as", "healthy"), [("healthy", True), ("unhealthy", False)])
async def test_warning_is_configurable(tmp_path: Path, consul: ConsulTestServer, warning_as: str,
                                       healthy: bool) -> None:
    consul.services["web"] = [ConsulTestServer.entry("web", "127.0.0.1", 9001, status="warning")]
    async with consul_plane(tmp_path, consul, token=TOKEN, warning_as=warning_as) as plane:
        assert instances(plane) == [(9001, healthy, 1.0)]  # Weights.Warning while warning


async def test_a_wrong_token_or_a_lost_consul_never_empties_the_view(tmp_path: Path,
                                                                    consul: ConsulTestServer) -> None:
    (tmp_path / "bad").mkdir()
    async with running_plane(tmp_path / "bad", None, sources=[ConsulSourceConfig(
        kind="consul", name="consul", address=consul.url, token="wrong")], published=False) as bad:
        source = bad.cp.sources[0]
        await eventually(lambda: source.last_error is not None, what="ACL refusal")
        assert "403" in (source.last_error or "") and bad.cp.publisher.published == 0

    async with consul_plane(tmp_path, consul, token=TOKEN, wait=1.0) as plane:
        await consul.stop()
        source = plane.cp.sources[0]
        await eventually(lambda: source.last_error is not None, timeout=10, what="Consul loss noticed")
        assert instances(plane) == [(9001, True, 3.0), (9002, True, 1.0)]
