"""/debug/config_dump, /debug/registry, /debug/sources, and the ``xdscp status``/``dump``
commands, against a running control plane with a real gRPC client connected."""

from __future__ import annotations

import json
import time

import grpc

from xdscp.type_urls import CLUSTER, ENDPOINT

from cli import xdscp_cli
from plane import Plane
from xds_client import node, sotw_request, sotw_stream


async def test_config_dump_shows_what_the_group_is_served(plane: Plane) -> None:
    status, dump = await plane.admin_json("/debug/config_dump")
    assert status == 200 and dump["group"] == "default"
    clusters = dump["types"][CLUSTER]
    assert clusters["version"] and sorted(r["name"] for r in clusters["resources"]) == ["api", "echo"]
    assert all(r["@type"] == CLUSTER for r in clusters["resources"])
    eds = dump["types"][ENDPOINT]["resources"]
    echo = next(r for r in eds if r["clusterName"] == "echo")
    ports = sorted(e["endpoint"]["address"]["socketAddress"]["portValue"] for e in echo["endpoints"][0]["lbEndpoints"])
    assert ports == [9001, 9002]
    status, only = await plane.admin_json("/debug/config_dump?type=Cluster")
    assert list(only["types"]) == [CLUSTER]
    # Every group is served the common snapshot unless it has its own.
    status, other = await plane.admin_json("/debug/config_dump?group=canary")
    assert status == 200 and other["types"][CLUSTER]["version"] == clusters["version"]


async def test_registry_and_sources_views(plane: Plane) -> None:
    status, merged = await plane.admin_json("/debug/registry")
    assert status == 200 and [s["name"] for s in merged["services"]] == ["api", "echo"]
    echo = next(s for s in merged["services"] if s["name"] == "echo")
    assert [i["port"] for i in echo["instances"]] == [9001, 9002]
    status, own = await plane.admin_json("/debug/registry?source=file")
    assert status == 200 and len(own["services"]) == 2
    status, err = await plane.admin_json("/debug/registry?source=nosuch")
    assert status == 404
    status, sources = await plane.admin_json("/debug/sources")
    (listed,) = sources["sources"]
    last_sync = listed.pop("last_sync")  # Unix time of its last update: the load, a moment ago
    assert isinstance(last_sync, float) and abs(time.time() - last_sync) < 600
    assert listed == {"name": "file", "kind": "file", "priority": 0, "required": True, "synced": True,
                      "up": True, "last_error": None, "services": 2}


async def test_status_lists_streams_and_fails_while_a_node_rejects_its_config(plane: Plane) -> None:
    admin = f"127.0.0.1:{plane.cp.admin_port}"
    async with grpc.aio.insecure_channel(plane.target) as channel:
        s = sotw_stream(channel)
        s.send(sotw_request(CLUSTER, with_node=node("gw-7", "edge")))
        resp = await s.recv()
        s.send(sotw_request(CLUSTER, version=resp.version_info, nonce=resp.nonce))
        await s.expect_silence(0.2)
        code, out = await xdscp_cli("status", "--admin", admin)
        assert code == 0, out
        row = next(line for line in out.splitlines() if line.startswith("gw-7"))
        assert "edge" in row and "sotw" in row and "cds" in row and row.count(resp.version_info) == 2
        message = ("Error adding/updating cluster(s) api: envoy.config.cluster.v3.Cluster rejected because its "
                   "connect_timeout\nis out of range, and this message is longer than any column")
        s.send(sotw_request(CLUSTER, version=resp.version_info, nonce=resp.nonce, error=message))
        await s.expect_silence(0.2)
        code, out = await xdscp_cli("status", "--admin", admin)
        assert code == 1, out
        row = next(line for line in out.splitlines() if line.startswith("gw-7"))
        assert row.endswith("(current) " + " ".join(message.split())), out  # whole, on one line
        code, out = await xdscp_cli("status", "--admin", admin, "--json")
        assert code == 0 and any(n["node_id"] == "gw-7" for n in json.loads(out))
        await s.close()


async def test_dump_prints_the_config_and_says_when_the_admin_api_is_away(plane: Plane) -> None:
    admin = f"127.0.0.1:{plane.cp.admin_port}"
    code, out = await xdscp_cli("dump", "--admin", admin, "--type", "Listener")
    assert code == 0, out
    assert out.startswith("xdscp dump: no node of group 'default' is connected (groups connected: none)")
    listeners = json.loads(out.split("\n", 1)[1])["types"]
    assert [r["name"] for t in listeners.values() for r in t["resources"]] == ["ingress_http"]
    code, out = await xdscp_cli("dump", "--admin", admin, "--type", "Clusters")
    assert code == 2 and out.strip() == ("xdscp dump: no type 'Clusters' is served; types: Cluster, "
                                         "ClusterLoadAssignment, Listener, RouteConfiguration"), out
    code, out = await xdscp_cli("dump", "--admin", "127.0.0.1:1")
    assert code == 2 and "cannot read" in out


async def test_dump_defaults_to_the_group_connected(plane: Plane) -> None:
    admin = f"127.0.0.1:{plane.cp.admin_port}"
    async with grpc.aio.insecure_channel(plane.target) as channel:
        s = sotw_stream(channel)
        s.send(sotw_request(CLUSTER, with_node=node("gw-1", "ingress")))
        await s.recv()
        code, out = await xdscp_cli("dump", "--admin", admin, "--type", "Cluster")
        assert code == 0 and json.loads(out)["group"] == "ingress" and json.loads(out)["connected"] is True, out
        await s.close()
