"""``kind: etcd`` against a real etcd (Debian's etcd-server, installed by `make sysdeps`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from xdscp.config import EtcdSourceConfig
from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.etcd import EtcdServer, etcd_binary
from xdscp.model.service import ServiceKey

from plane import Plane, running_plane
from upstreams import running_upstreams
from waiting import eventually, until

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd not installed: make sysdeps installs etcd-server")

PREFIX = "/xdscp/services"


@pytest.fixture
async def etcd_plane(tmp_path: Path, etcd: EtcdServer) -> AsyncIterator[Plane]:
    etcd.put(f"{PREFIX}/echo/a", {"host": "127.0.0.1", "port": 9001})
    etcd.put(f"{PREFIX}/echo/b", {"host": "127.0.0.1", "port": 9002})
    async with running_plane(tmp_path, None, sources=[
        EtcdSourceConfig(kind="etcd", name="etcd", endpoints=[etcd.url], prefix=PREFIX, timeout=2.0)]) as plane:
        yield plane


async def lose_etcd(plane: Plane, etcd: EtcdServer) -> Any:
    """Stop etcd and wait until the source has noticed; return the source."""
    source = plane.cp.sources[0]
    etcd.stop()
    await eventually(lambda: source.last_error is not None, timeout=10, what="etcd loss noticed")
    return source


async def test_listing_then_every_change_is_followed(etcd_plane: Plane, etcd: EtcdServer) -> None:
    assert etcd_plane.ports() == [9001, 9002]
    etcd.put(f"{PREFIX}/echo/c", {"host": "127.0.0.1", "port": 9003, "weight": 3})
    await eventually(lambda: etcd_plane.ports() == [9001, 9002, 9003], what="c added")
    etcd.delete(f"{PREFIX}/echo/a")
    await eventually(lambda: etcd_plane.ports() == [9002, 9003], what="a removed")
    etcd.put(f"{PREFIX}/api", {"lb_policy": "RANDOM", "locality_failover": True})
    etcd.put(f"{PREFIX}/api/x", {"host": "127.0.0.1", "port": 9101})
    await eventually(lambda: etcd_plane.ports("api") == [9101], what="api added")
    api = etcd_plane.cp.registry.services[ServiceKey("public", "DEFAULT_GROUP", "api")]
    assert api.lb_policy.value == "RANDOM" and api.locality_failover is True
    etcd.delete(f"{PREFIX}/api/x")
    etcd.delete(f"{PREFIX}/api")
    await eventually(lambda: etcd_plane.ports("api") is None, what="api gone")


async def test_moving_a_service_to_another_namespace_removes_the_old_one(etcd_plane: Plane, etcd: EtcdServer) -> None:
    etcd.put(f"{PREFIX}/echo", {"namespace": "staging"})
    await eventually(lambda: etcd_plane.ports(namespace="staging") == [9001, 9002], what="moved")
    assert etcd_plane.ports() is None  # the old one is gone, not left empty


async def test_bad_values_are_dropped_alone(etcd_plane: Plane, etcd: EtcdServer,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="xdscp.sources.etcd")
    etcd.put(f"{PREFIX}/echo/junk", "not json")
    etcd.put(f"{PREFIX}/echo/noport", {"host": "127.0.0.1"})
    etcd.put(f"{PREFIX}/echo/c", {"host": "127.0.0.1", "port": 9003})
    await eventually(lambda: etcd_plane.ports() == [9001, 9002, 9003], what="c added, junk dropped")
    dropped = [r.xdscp_fields["problem"] for r in caplog.records  # type: ignore[attr-defined]
               if r.getMessage() == "source.entry_dropped"]
    assert any("echo/junk" in m and "not JSON" in m for m in dropped)
    assert any("port" in m for m in dropped)


async def test_while_etcd_is_down_the_last_view_stays_and_the_watch_resumes(
        etcd_plane: Plane, etcd: EtcdServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xdscp.sources.etcd")
    source = await lose_etcd(etcd_plane, etcd)
    assert etcd_plane.ports() == [9001, 9002]  # nothing wiped
    assert etcd_plane.cp.readiness()["sources"]["etcd"]["last_error"]
    etcd.start()
    # Written right after the restart: whether the source has reconnected yet or not,
    # resuming from its last revision must deliver it.
    etcd.put(f"{PREFIX}/echo/c", {"host": "127.0.0.1", "port": 9003})
    await eventually(lambda: etcd_plane.ports() == [9001, 9002, 9003], timeout=15, what="resumed")
    assert source.last_error is None
    assert not any("source.loaded" in r.getMessage() for r in caplog.records)  # resumed, not re-listed


async def test_a_compacted_revision_falls_back_to_a_full_listing(
        etcd_plane: Plane, etcd: EtcdServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xdscp.sources.etcd")
    source = await lose_etcd(etcd_plane, etcd)
    await eventually(lambda: source.health.failures >= 3, timeout=10, what="backing off")  # type: ignore[attr-defined]
    etcd.start()
    etcd.delete(f"{PREFIX}/echo/a")
    revision = etcd.put(f"{PREFIX}/echo/c", {"host": "127.0.0.1", "port": 9003})
    etcd.compact(revision)  # before the source is back: its resume point is gone
    await eventually(lambda: etcd_plane.ports() == [9002, 9003], timeout=15, what="re-listed")
    assert any("source.compacted" in r.getMessage() for r in caplog.records)


def test_a_real_envoy_follows_etcd(tmp_path: Path, etcd: EtcdServer) -> None:
    with running_upstreams("a", "b") as upstreams:
        for u in upstreams:
            etcd.put(f"{PREFIX}/echo/{u.name}", {"host": "127.0.0.1", "port": u.port})
        xdscp = XdscpProcess(tmp_path, log_level="warning", sources=[
            {"kind": "etcd", "endpoints": [etcd.url], "prefix": PREFIX}]).start()
        envoy = EnvoyProcess(REPO_ENVOY_DIR / "bootstrap-ads.yaml", xdscp.xds_address, tmp_path).start()
        try:
            addrs = {f"127.0.0.1:{u.port}" for u in upstreams}
            until(lambda: set(envoy.cluster_hosts("echo")) == addrs, what="both instances in Envoy")
            etcd.delete(f"{PREFIX}/echo/a")
            until(lambda: set(envoy.cluster_hosts("echo")) == {f"127.0.0.1:{upstreams[1].port}"},
                  what="a gone from Envoy")
        finally:
            envoy.stop()
            xdscp.stop()
