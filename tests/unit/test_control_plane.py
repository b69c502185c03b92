"""The assembled control plane: readiness, node groups, sources that fail or merge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from xdscp.config import Config, FileSourceConfig
from xdscp.model.registry import Registry
from xdscp.model.service import Instance, Service, ServiceKey
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.type_urls import CLUSTER, ENDPOINT

from plane import embedded_source, running_plane, service, write_registry
from waiting import eventually
from xds_client import node, sotw_request, sotw_stream, unpack


async def test_not_ready_and_silent_until_the_registry_file_is_good(tmp_path: Path) -> None:
    (tmp_path / "registry.yaml").write_text("services: [")
    async with running_plane(tmp_path, None, published=False) as plane:
        async def rejected() -> tuple[int, dict] | None:
            status, body = await plane.admin_json("/readyz")
            return (status, body) if body["sources"]["file"]["last_error"] else None

        status, body = await eventually(rejected, what="the file source's first read")
        assert status == 503 and body["ready"] is False
        assert "invalid YAML" in body["sources"]["file"]["last_error"]
        assert (await plane.admin_json("/healthz"))[0] == 200
        async with grpc.aio.insecure_channel(plane.target) as ch:
            s = sotw_stream(ch)
            s.send(sotw_request(CLUSTER, with_node=node()))
            await s.expect_silence(0.3)  # never an empty world that would wipe Envoy's clusters
            plane.write([service("echo", 9001)])
            resp = await s.recv()
            assert [unpack(r).name for r in resp.resources] == ["echo"]
            await s.close()
        status, body = await plane.admin_json("/readyz")
        assert status == 200 and body["sources"]["file"]["synced"] is True


async def test_an_optional_source_that_cannot_be_reached_is_served_without_after_its_grace(tmp_path: Path) -> None:
    from xdscp.config import NacosSourceConfig
    from xdscp.local.ports import free_port

    nowhere = f"http://127.0.0.1:{free_port()}"  # no Nacos listens there, as on a fresh machine
    async with running_plane(tmp_path, [service("echo", 9001)], sources=[
        FileSourceConfig(kind="file", name="file", path=tmp_path / "registry.yaml"),
        NacosSourceConfig(kind="nacos", name="nacos", servers=[nowhere], required=False, startup_grace=1.0)],
                                 published=False) as plane:
        async with grpc.aio.insecure_channel(plane.target) as ch:
            s = sotw_stream(ch)
            s.send(sotw_request(CLUSTER, with_node=node()))
            resp = await s.recv()  # after the grace: the file's services, without Nacos'
            assert [unpack(r).name for r in resp.resources] == ["echo"]
            await s.close()
        status, body = await plane.admin_json("/readyz")
        assert status == 200 and body["missing"] == ["nacos"]
        assert body["sources"]["nacos"]["required"] is False and body["sources"]["nacos"]["up"] is False
        assert "cannot reach" in body["sources"]["nacos"]["last_error"]


async def test_a_required_source_that_cannot_be_reached_holds_the_first_snapshot(tmp_path: Path) -> None:
    from xdscp.config import NacosSourceConfig
    from xdscp.local.ports import free_port

    async with running_plane(tmp_path, [service("echo", 9001)], sources=[
        FileSourceConfig(kind="file", name="file", path=tmp_path / "registry.yaml"),
        NacosSourceConfig(kind="nacos", name="nacos", servers=[f"http://127.0.0.1:{free_port()}"])],
                                 published=False) as plane:
        async def failed() -> dict | None:
            # The file loads on its own time: wait for it too, not only for Nacos' failure.
            _, body = await plane.admin_json("/readyz")
            return body if body["sources"]["nacos"]["last_error"] and body["sources"]["file"]["up"] else None

        body = await eventually(failed, timeout=20, what="a failed read of Nacos, and the file loaded")
        assert body["ready"] is False and body["missing"] == ["nacos"] and plane.cp.publisher.published == 0


async def test_node_group_by_metadata(tmp_path: Path) -> None:
    async with running_plane(tmp_path, [service("echo", 9001)], node_group_by="metadata:gateway",
                             published=False) as plane:
        async with grpc.aio.insecure_channel(plane.target) as ch:
            n = node("n1")
            n.metadata.fields["gateway"].string_value = "public-gw"
            s = sotw_stream(ch)
            s.send(sotw_request(CLUSTER, with_node=n))
            await s.recv()
            _, body = await plane.admin_json("/debug/nodes")
            assert body["nodes"][0]["group"] == "public-gw"
            await s.close()


async def test_missing_file_at_runtime_keeps_the_last_good_view(tmp_path: Path) -> None:
    async with running_plane(tmp_path, [service("echo", 9001)]) as plane:
        version = plane.cp.publisher.last_version
        plane.registry.unlink()
        src = plane.cp.sources[0]
        for _ in range(100):
            if src.last_error:
                break
            await asyncio.sleep(0.02)
        assert "no such file" in src.last_error
        assert plane.cp.publisher.last_version == version
        write_registry(plane.registry, [service("echo", 9001)])  # same content: nothing to publish
        for _ in range(100):
            if src.last_error is None:
                break
            await asyncio.sleep(0.02)
        assert plane.cp.publisher.last_version == version


async def test_embedded_and_file_sources_side_by_side(tmp_path: Path) -> None:
    # The file lists echo on 9001; a client registers echo on 9002 in the embedded registry.
    write_registry(tmp_path / "registry.yaml", [service("echo", 9001, lb_policy="RANDOM")])
    async with running_plane(tmp_path, None, sources=[
        FileSourceConfig(kind="file", name="file", path=tmp_path / "registry.yaml", poll_interval=0.02),
        embedded_source(tmp_path)]) as plane:
        store = plane.cp.sources[1].store  # type: ignore[attr-defined]
        await store.register(ServiceKey("public", "DEFAULT_GROUP", "echo"), Instance(host="127.0.0.1", port=9002))
        await plane.wait_published(2)  # after xds.debounce
        merged = plane.cp.registry.services[ServiceKey("public", "DEFAULT_GROUP", "echo")]
        assert [i.port for i in merged.instances] == [9001, 9002]
        assert merged.lb_policy.value == "RANDOM"  # the first source's settings
        async with grpc.aio.insecure_channel(plane.target) as ch:
            s = sotw_stream(ch)
            s.send(sotw_request(ENDPOINT, ["echo"], with_node=node()))
            cla = unpack((await s.recv()).resources[0])
            assert sorted(e.endpoint.address.socket_address.port_value
                          for loc in cla.endpoints for e in loc.lb_endpoints) == [9001, 9002]
            await s.close()


def test_registry_merges_sources_and_reports_changes() -> None:
    reg = Registry(["a", "b"])
    echo_a = Service(name="echo", instances=(Instance(host="10.0.0.1", port=1),), lb_policy="RANDOM")
    echo_b = Service(name="echo", instances=(Instance(host="10.0.0.2", port=1), Instance(host="10.0.0.1", port=1)))
    assert reg.apply("a", FullSnapshot.of([echo_a])) == {echo_a.key}
    assert not reg.ready
    assert reg.apply("b", FullSnapshot.of([echo_b])) == {echo_a.key}
    assert reg.ready
    merged = reg.services[echo_a.key]
    assert merged.lb_policy.value == "RANDOM"  # the first source's settings
    assert [i.host for i in merged.instances] == ["10.0.0.1", "10.0.0.2"]
    assert reg.apply("b", FullSnapshot.of([echo_b])) == set()  # same content: no change
    assert reg.apply("b", ServiceChange(removed=(echo_b.key,))) == {echo_a.key}
    assert reg.services[echo_a.key] is echo_a  # one source left: its object, identity kept
    assert reg.apply("a", ServiceChange(removed=(echo_a.key,))) == {echo_a.key}
    assert echo_a.key not in reg.services


def test_embedded_registry_is_the_default_source() -> None:
    (only,) = Config().sources
    assert only.kind == "embedded"
    assert Config(sources=[]).sources == []


def test_a_source_priority_is_added_to_its_instances() -> None:
    reg = Registry(["local", "remote"], {"remote": 1})
    local = Service(name="echo", instances=(Instance(host="10.0.0.1", port=1),))
    remote = Service(name="echo", instances=(Instance(host="10.9.0.1", port=1), Instance(host="10.9.0.2", port=1,
                                                                                         priority=1)))
    reg.apply("local", FullSnapshot.of([local]))
    reg.apply("remote", FullSnapshot.of([remote]))
    merged = reg.services[local.key]
    assert [(i.host, i.priority) for i in merged.instances] == [("10.0.0.1", 0), ("10.9.0.1", 1), ("10.9.0.2", 2)]
    assert reg.apply("remote", FullSnapshot.of([remote])) == set()  # same content: no change


async def test_an_embedded_registry_whose_nacos_grpc_port_is_taken_reports_it(tmp_path: Path) -> None:
    import socket

    from prometheus_client import REGISTRY

    from xdscp.local.ports import free_port_pair
    from xdscp.nacos_protocol import GRPC_PORT_OFFSET

    admin = free_port_pair(GRPC_PORT_OFFSET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", admin + GRPC_PORT_OFFSET))
        taken.listen()
        async with running_plane(tmp_path, None, sources=[embedded_source(tmp_path)],
                                  admin={"address": f"127.0.0.1:{admin}"}) as plane:
            _, body = await plane.admin_json("/readyz")
            state = body["sources"]["embedded"]
            assert body["ready"] is True and state["synced"] is True and state["up"] is False
            assert "Nacos gRPC not served" in state["last_error"]
            assert REGISTRY.get_sample_value("xdscp_source_up", {"source": "embedded"}) == 0
    assert REGISTRY.get_sample_value("xdscp_source_up", {"source": "embedded"}) is None  # gone with its plane
