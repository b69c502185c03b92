"""MCP-over-xDS (Istio configSources, Higress): the ServiceEntry/WorkloadEntry collections
over SotW and Delta (tests/test_istio_client.py follows Istio's own client through them all).

No Istio can run here (istiod needs Kubernetes or its images, and Docker Hub is out of
reach), so the client is a real gRPC ADS client that decodes every resource with the
messages generated from protos/, which carry istio/api's package, field names and
numbers. It follows Istio's MCP client: one request per collection, ACK by nonce,
each response taken as the collection's full state.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryResponse

from xdscp.config import McpConfig
from xdscp.istio_api.mcp.v1alpha1 import resource_pb2
from xdscp.istio_api.networking.v1alpha3 import service_entry_pb2
from xdscp.type_urls import MCP_RESOURCE, SERVICE_ENTRY, WORKLOAD_ENTRY

from istio_client import BODIES
from plane import Plane, running_plane, service
from xds_client import delta_request, delta_stream, node, sotw_request, sotw_stream

SE = service_entry_pb2.ServiceEntry
ECHO = "istio-system/echo.default-group.public.xdscp"


def registry() -> list[dict[str, Any]]:
    echo = service("echo", 9001, 9002, metadata={"protocol": "grpc"})
    echo["instances"][0].update({"metadata": {"version": "v1", "bad key!": "x", "note": "has spaces"},
                                 "region": "eu", "zone": "eu-1a", "weight": 2})
    echo["instances"].append({"host": "127.0.0.1", "port": 9003, "healthy": False})
    echo["instances"].append({"host": "127.0.0.1", "port": 9004, "enabled": False})
    return [echo, service("api", 9101, group="payments", namespace="prod")]


def decode(resp: DiscoveryResponse) -> dict[str, tuple[resource_pb2.Resource, Any]]:
    """name -> (the MCP Resource, its decoded body), checking the envelope on the way."""
    out = {}
    for any_msg in resp.resources:
        assert any_msg.type_url == MCP_RESOURCE
        res = resource_pb2.Resource.FromString(any_msg.value)
        body = BODIES[res.body.type_url].FromString(res.body.value)
        out[res.metadata.name] = (res, body)
    return out


@pytest.fixture
async def mcp_plane(tmp_path: Path) -> AsyncIterator[Plane]:
    async with running_plane(tmp_path, registry(), mcp=McpConfig(enabled=True)) as plane:
        yield plane


async def first_response(channel: grpc.aio.Channel, type_url: str = SERVICE_ENTRY) -> tuple[Any, DiscoveryResponse]:
    s = sotw_stream(channel)
    s.send(sotw_request(type_url, with_node=node("istiod", "istio-system")))
    return s, await s.recv()


async def test_every_service_is_a_service_entry_with_its_serving_instances(mcp_plane: Plane) -> None:
    async with grpc.aio.insecure_channel(mcp_plane.target) as channel:
        s, resp = await first_response(channel)
        assert resp.type_url == SERVICE_ENTRY and resp.version_info and resp.nonce
        found = decode(resp)
        assert set(found) == {ECHO, "istio-system/api.payments.prod.xdscp"}
        res, se = found[ECHO]
        assert list(se.hosts) == ["echo.default-group.public.xdscp"]
        assert se.location == SE.MESH_INTERNAL and se.resolution == SE.STATIC
        assert [(p.number, p.protocol, p.name) for p in se.ports] == [(80, "GRPC", "grpc")]
        # 9003 is unhealthy and 9004 disabled: Istio has no health flag, so they are left out.
        assert [(e.address, dict(e.ports), e.weight) for e in se.endpoints] == [
            ("127.0.0.1", {"grpc": 9001}, 200), ("127.0.0.1", {"grpc": 9002}, 100)]
        first = se.endpoints[0]
        assert dict(first.labels) == {"version": "v1"}  # keys/values Kubernetes would refuse are dropped
        assert first.locality == "eu/eu-1a"
        assert res.metadata.version and res.metadata.annotations["xdscp.io/service-key"] == "public/DEFAULT_GROUP/echo"
        assert not res.metadata.HasField("create_time")  # content only: replicas agree
        await s.close()


async def test_a_change_gives_that_service_alone_a_new_version_at_once(mcp_plane: Plane) -> None:
    async with grpc.aio.insecure_channel(mcp_plane.target) as channel:
        s, resp = await first_response(channel)
        before = {n: r.metadata.version for n, (r, _) in decode(resp).items()}
        s.send(sotw_request(SERVICE_ENTRY, version=resp.version_info, nonce=resp.nonce))
        await s.expect_silence(0.2)  # ACKed: nothing to send
        changed = registry()
        changed[0]["instances"][1]["weight"] = 5
        mcp_plane.write(changed)
        resp2 = await s.recv()
        after = {n: r.metadata.version for n, (r, _) in decode(resp2).items()}
        assert set(after) == set(before)  # the full state of the collection, every time
        assert after[ECHO] != before[ECHO]
        api = "istio-system/api.payments.prod.xdscp"
        assert after[api] == before[api]
        assert resp2.version_info != resp.version_info
        await s.close()


async def test_the_last_instance_going_leaves_an_empty_service_entry(mcp_plane: Plane) -> None:
    async with grpc.aio.insecure_channel(mcp_plane.target) as channel:
        s, resp = await first_response(channel)
        s.send(sotw_request(SERVICE_ENTRY, version=resp.version_info, nonce=resp.nonce))
        mcp_plane.write([service("echo"), service("api", 9101, group="payments", namespace="prod")])
        _, se = decode(await s.recv())[ECHO]
        assert list(se.hosts) == ["echo.default-group.public.xdscp"] and len(se.endpoints) == 0
        mcp_plane.write([service("api", 9101, group="payments", namespace="prod")])
        assert ECHO not in decode(await s.recv())  # the service itself is gone
        await s.close()


async def test_nack_on_a_collection_is_recorded_and_not_answered_with_the_same_state(mcp_plane: Plane) -> None:
    async with grpc.aio.insecure_channel(mcp_plane.target) as channel:
        s, resp = await first_response(channel)
        s.send(sotw_request(SERVICE_ENTRY, nonce=resp.nonce, error="ServiceEntry echo: invalid"))
        await s.expect_silence(0.3)
        _, body = await mcp_plane.admin_json("/debug/nodes")
        se = next(n for n in body["nodes"] if n["node_id"] == "istiod")["types"][SERVICE_ENTRY]
        assert se["last_nack"] == "ServiceEntry echo: invalid" and se["version_acked"] == ""
        await s.close()


async def test_collections_not_served_are_answered_empty_so_istio_can_sync(mcp_plane: Plane) -> None:
    async with grpc.aio.insecure_channel(mcp_plane.target) as channel:
        for collection in ("networking.istio.io/v1/Gateway", "core/v1alpha1/MeshConfig", WORKLOAD_ENTRY,
                           "networking.istio.io/v1beta1/VirtualService"):  # no gray release: none
            s, resp = await first_response(channel, collection)
            assert resp.type_url == collection and len(resp.resources) == 0 and resp.nonce
            await s.close()


async def test_delta_serves_the_same_resources(mcp_plane: Plane) -> None:
    async with grpc.aio.insecure_channel(mcp_plane.target) as channel:
        s, sotw = await first_response(channel)
        d = delta_stream(channel)
        d.send(delta_request(SERVICE_ENTRY, ["*"], with_node=node("istiod-delta", "istio-system")))
        resp = await d.recv()
        assert {r.name for r in resp.resources} == set(decode(sotw))
        assert all(r.resource.type_url == MCP_RESOURCE for r in resp.resources)
        await d.close()
        await s.close()


async def test_workload_entries_mode(tmp_path: Path) -> None:
    async with running_plane(tmp_path, registry(), mcp=McpConfig(enabled=True, workload_entries=True, namespace="mesh",
                                                                  host_suffix="reg.local", service_port=8080)) as plane:
        async with grpc.aio.insecure_channel(plane.target) as channel:
            s, resp = await first_response(channel)
            _, se = decode(resp)["mesh/echo.default-group.public.reg.local"]
            assert len(se.endpoints) == 0 and se.ports[0].number == 8080
            selector = dict(se.workload_selector.labels)
            assert selector == {"xdscp.io/service": "echo.default-group.public.reg.local"}
            w, wresp = await first_response(channel, WORKLOAD_ENTRY)
            entries = {n: we for n, (_, we) in decode(wresp).items()}
            assert sorted(entries) == ["mesh/api.payments.prod.reg.local-127.0.0.1-9101",
                                       "mesh/echo.default-group.public.reg.local-127.0.0.1-9001",
                                       "mesh/echo.default-group.public.reg.local-127.0.0.1-9002"]
            we = entries["mesh/echo.default-group.public.reg.local-127.0.0.1-9001"]
            assert we.address == "127.0.0.1" and dict(we.ports) == {"grpc": 9001}
            assert we.labels["xdscp.io/service"] == selector["xdscp.io/service"] and we.labels["version"] == "v1"
            await w.close()
            await s.close()


async def test_mcp_is_off_by_default_and_a_request_for_it_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="xdscp.server")
    async with running_plane(tmp_path, registry()) as plane:
        async with grpc.aio.insecure_channel(plane.target) as channel:
            s, resp = await first_response(channel)
            assert len(resp.resources) == 0
            await s.close()
        hints = [r.xdscp_fields.get("hint") for r in caplog.records  # type: ignore[attr-defined]
                 if r.getMessage() == "xds.type_not_served"]
        assert hints == ["set mcp.enabled: true to serve it"]
