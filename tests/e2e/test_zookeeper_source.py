"""``kind: zookeeper`` against a real ZooKeeper (Debian's zookeeper, installed by `make sysdeps`).

Providers register as Dubbo's ZookeeperRegistry does (see zookeeper_server.py): ephemeral
znodes held by their own sessions, so "a provider exits" is a real session close.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from xdscp.config import ZooKeeperSourceConfig
from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.model.service import Instance, ServiceKey
from xdscp.sources.zookeeper.source import ZooKeeperSource

from plane import Plane, running_plane
from upstreams import running_upstreams
from waiting import eventually, until
from zookeeper_server import DubboProvider, ZooKeeperServer, provider_znode, zookeeper_available

pytestmark = pytest.mark.skipif(not zookeeper_available(),
                                reason="zookeeper not installed: make sysdeps installs it")

DEMO = "org.demo.DemoService"


@pytest.fixture
def zk(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def providers(zk: ZooKeeperServer) -> Iterator[dict[int, DubboProvider]]:
    """Providers by port; those still registered at the end are stopped."""
    running: dict[int, DubboProvider] = {}
    try:
        yield running
    finally:
        for p in running.values():
            p.stop()


def register(zk: ZooKeeperServer, providers: dict[int, DubboProvider], port: int,
             interface: str = DEMO, **params: str) -> None:
    providers[port] = DubboProvider(zk, interface, port, **params)


def deregister(providers: dict[int, DubboProvider], port: int) -> None:
    providers.pop(port).stop()


@pytest.fixture
async def zk_plane(tmp_path: Path, zk: ZooKeeperServer, providers: dict[int, DubboProvider]) -> AsyncIterator[Plane]:
    register(zk, providers, 9001)
    register(zk, providers, 9002)
    async with running_plane(tmp_path, None, sources=[ZooKeeperSourceConfig(
            kind="zookeeper", name="zk", hosts=[zk.hosts], timeout=2.0, session_timeout=4.0)]) as plane:
        yield plane


def instances(plane: Plane, name: str = DEMO, group: str = "DEFAULT_GROUP") -> dict[int, Instance] | None:
    svc = plane.cp.registry.services.get(ServiceKey("public", group, name))
    return None if svc is None else {i.port: i for i in svc.instances}


def source(plane: Plane) -> ZooKeeperSource:
    src = plane.cp.sources[0]
    assert isinstance(src, ZooKeeperSource)
    return src


async def test_providers_are_listed_then_every_change_is_followed(
        zk_plane: Plane, zk: ZooKeeperServer, providers: dict[int, DubboProvider]) -> None:
    await eventually(lambda: zk_plane.ports(DEMO) == [9001, 9002], what="listed")
    register(zk, providers, 9003, weight="300")
    await eventually(lambda: zk_plane.ports(DEMO) == [9001, 9002, 9003], what="9003 added")
    assert instances(zk_plane)[9003].weight == 300  # type: ignore[index]
    assert instances(zk_plane)[9001].weight == 100  # type: ignore[index]  # Dubbo's default
    deregister(providers, 9001)  # the provider's session closes; ZooKeeper removes its znode
    await eventually(lambda: zk_plane.ports(DEMO) == [9002, 9003], what="9001 gone")


async def test_a_new_interface_and_its_groups_appear_and_go(
        zk_plane: Plane, zk: ZooKeeperServer, providers: dict[int, DubboProvider]) -> None:
    register(zk, providers, 9101, interface="org.demo.Orders", group="blue")
    await eventually(lambda: zk_plane.ports("org.demo.Orders", "blue") == [9101], what="blue")
    assert zk_plane.ports("org.demo.Orders") == []  # its default group exists, empty
    deregister(providers, 9101)
    await eventually(lambda: zk_plane.ports("org.demo.Orders", "blue") is None, what="blue gone")


async def test_an_interface_whose_providers_come_later_is_watched(
        zk_plane: Plane, zk: ZooKeeperServer, providers: dict[int, DubboProvider]) -> None:
    consumer = zk.client()  # a consumer registers first: the interface exists, /providers not yet
    try:
        consumer.create(f"/dubbo/org.demo.Late/consumers/{provider_znode('org.demo.Late', 1, side='consumer')}",
                        ephemeral=True, makepath=True)
        await eventually(lambda: zk_plane.ports("org.demo.Late") == [], what="seen, empty")
        register(zk, providers, 9201, interface="org.demo.Late")
        await eventually(lambda: zk_plane.ports("org.demo.Late") == [9201], what="provider seen")
    finally:
        consumer.stop()
        consumer.close()


async def test_the_last_provider_leaving_empties_the_service(
        zk_plane: Plane, providers: dict[int, DubboProvider]) -> None:
    deregister(providers, 9001)
    deregister(providers, 9002)
    # The registry says zero: the service stays, with no endpoint to send traffic to.
    await eventually(lambda: zk_plane.ports(DEMO) == [], what="emptied")


async def test_provider_parameters_become_instance_fields_and_metadata(
        zk_plane: Plane, zk: ZooKeeperServer, providers: dict[int, DubboProvider]) -> None:
    register(zk, providers, 9003, version="2.0.0", application="demo-provider", enabled="false")
    register(zk, providers, 9004, version="2.0.0", disabled="true")
    await eventually(lambda: zk_plane.ports(DEMO) == [9001, 9002, 9003, 9004], what="added")
    found = instances(zk_plane)
    assert found is not None
    assert found[9003].metadata == {"version": "2.0.0", "application": "demo-provider", "protocol": "dubbo"}
    assert not found[9003].enabled and not found[9004].enabled and found[9001].enabled
    assert "timestamp" not in found[9001].metadata  # volatile: a restart must not change the endpoint


async def test_bad_znodes_are_dropped_alone(zk_plane: Plane, zk: ZooKeeperServer,
                                            providers: dict[int, DubboProvider],
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="xdscp.sources.zookeeper")
    admin = zk.client()
    try:
        base = f"/dubbo/{DEMO}/providers/"
        admin.create(base + "not-a-url")
        admin.create(base + provider_znode(DEMO, 1).replace("%3A1%2F", "%2F"))  # no port
        admin.create(base + provider_znode(DEMO, 9005, host="not-an-ip"))
        admin.create(base + provider_znode(DEMO, 9006, side="consumer"))  # not an endpoint, no complaint
        register(zk, providers, 9003)
        await eventually(lambda: zk_plane.ports(DEMO) == [9001, 9002, 9003], what="good one added")
    finally:
        admin.stop()
        admin.close()
    dropped = [r.xdscp_fields["problem"] for r in caplog.records  # type: ignore[attr-defined]
               if r.getMessage() == "source.entry_dropped"]
    assert any("not-a-url" in m and "not a provider URL" in m for m in dropped), dropped
    assert any("has no port" in m for m in dropped), dropped
    assert any("not-an-ip" in m for m in dropped), dropped
    assert len(dropped) >= 3 and not any("9006" in m for m in dropped)


async def test_while_zookeeper_is_down_the_last_view_stays(
        zk_plane: Plane, zk: ZooKeeperServer, providers: dict[int, DubboProvider]) -> None:
    await eventually(lambda: zk_plane.ports(DEMO) == [9001, 9002], what="listed")
    zk.stop()
    await eventually(lambda: source(zk_plane).last_error is not None, timeout=10, what="loss noticed")
    assert zk_plane.ports(DEMO) == [9001, 9002]  # nothing wiped
    assert zk_plane.cp.readiness()["sources"]["zk"]["last_error"]
    zk.start()  # same data: the providers' sessions are still within their timeout
    register(zk, providers, 9003)
    await eventually(lambda: zk_plane.ports(DEMO) == [9001, 9002, 9003], timeout=15, what="followed again")
    await eventually(lambda: source(zk_plane).last_error is None, what="healthy again")


async def test_after_the_session_expires_the_tree_is_listed_again_and_watched(
        zk_plane: Plane, zk: ZooKeeperServer, providers: dict[int, DubboProvider],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xdscp.sources.zookeeper")
    client = source(zk_plane).client
    assert client is not None
    # ZooKeeper's own way to expire a session: a second client joins it and closes it.
    session_id, password = client.client_id
    thief = KazooClient(hosts=zk.hosts, client_id=(session_id, password))
    thief.start(timeout=10)
    thief.stop()
    thief.close()
    await eventually(lambda: client.connected and client.client_id is not None
                                    and client.client_id[0] != session_id, timeout=15, what="a new session")
    register(zk, providers, 9003)
    await eventually(lambda: zk_plane.ports(DEMO) == [9001, 9002, 9003], timeout=10,
                     what="a change after the new session is seen")
    assert sum(r.getMessage() == "source.loaded" for r in caplog.records) >= 1


def test_a_real_envoy_follows_zookeeper(tmp_path: Path, zk: ZooKeeperServer,
                                        providers: dict[int, DubboProvider]) -> None:
    with running_upstreams("a", "b") as upstreams:
        for u in upstreams:
            register(zk, providers, u.port, interface="org.demo.Echo")
        xdscp = XdscpProcess(tmp_path, log_level="warning", sources=[
            {"kind": "zookeeper", "hosts": [zk.hosts]}]).start()
        envoy = EnvoyProcess(REPO_ENVOY_DIR / "bootstrap-ads.yaml", xdscp.xds_address, tmp_path).start()
        try:
            a, b = (f"127.0.0.1:{u.port}" for u in upstreams)
            until(lambda: set(envoy.cluster_hosts("org.demo.Echo")) == {a, b}, what="both providers in Envoy")
            deregister(providers, upstreams[0].port)
            until(lambda: set(envoy.cluster_hosts("org.demo.Echo")) == {b}, what="a gone from Envoy")
            deregister(providers, upstreams[1].port)
            until(lambda: envoy.cluster_hosts("org.demo.Echo") == {}, what="the last one gone from Envoy")
        finally:
            envoy.stop()
            xdscp.stop()
