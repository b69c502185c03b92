"""Locality failover: per node locality, a service's endpoints prioritised by distance;
what is shared between localities, when a locality's view exists, and every face that
serves it (SotW, Delta, REST, --workers followers)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3.base_pb2 import Locality as LocalityProto
from envoy.config.core.v3.base_pb2 import Node
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryResponse
from prometheus_client import REGISTRY

from xdscp.cache.cache import Localities, SnapshotCache
from xdscp.cache.resource import Resource
from xdscp.config import Config, XdsConfig
from xdscp.errors import DocumentError
from xdscp.local.control_plane import XdscpProcess
from xdscp.model.locality import Locality
from xdscp.model.registry import Registry
from xdscp.model.service import Instance, Service
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.runtime_settings import translator
from xdscp.sources.registry_file import parse_registry_file
from xdscp.translation.endpoints import build_load_assignment
from xdscp.translation.locality_endpoints import SLICE, localized_assignment
from xdscp.translation.publisher import Publisher
from xdscp.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE

from cli import xdscp_cli
from plane import running_plane, write_registry
from waiting import eventually, until
from xds_client import delta_request, delta_stream, sotw_request, sotw_stream, unpack

Z1, Z2 = Locality("r1", "z1"), Locality("r1", "z2")


def inst(port: int, region: str, zone: str, **fields: Any) -> Instance:
    return Instance(host="10.0.0.1", port=port, region=region, zone=zone, **fields)


def spread(name: str = "echo", **fields: Any) -> Service:
    """One instance in r1/z1 (port 1), r1/z2 (2) and r2/z3 (3)."""
    return Service(name=name, instances=(inst(1, "r1", "z1"), inst(2, "r1", "z2"), inst(3, "r2", "z3")), **fields)


def decoded(res: Resource) -> endpoint_pb2.ClusterLoadAssignment:
    """The assignment, from the bytes served (a locality's assignments keep no message)."""
    any_msg = DiscoveryResponse.FromString(res.sotw_entry).resources[0]
    return endpoint_pb2.ClusterLoadAssignment.FromString(any_msg.value)


def levels(cla: endpoint_pb2.ClusterLoadAssignment) -> dict[int, int]:
    """port -> priority."""
    return {ep.endpoint.address.socket_address.port_value: loc.priority
            for loc in cla.endpoints for ep in loc.lb_endpoints}


# -- the assignment -------------------------------------------------------------------

def test_priorities_follow_distance_from_the_node() -> None:
    svc = spread()
    assert levels(build_load_assignment("echo", svc, Z1)) == {1: 0, 2: 1, 3: 2}
    assert levels(build_load_assignment("echo", svc, Z2)) == {1: 1, 2: 0, 3: 2}
    assert levels(build_load_assignment("echo", svc, Locality("r2", "z3"))) == {1: 1, 2: 1, 3: 0}
    # Nothing near: the levels stay without gaps (Envoy requires it).
    assert levels(build_load_assignment("echo", svc, Locality("r9", "z9"))) == {1: 0, 2: 0, 3: 0}
    assert levels(build_load_assignment("echo", svc)) == {1: 0, 2: 0, 3: 0}


def test_source_priorities_stay_above_distance() -> None:
    """A remote source's instance in the node's own zone still comes after every local one."""
    svc = Service(name="echo", instances=(inst(1, "r1", "z1"), inst(2, "r2", "z3"), inst(3, "r1", "z1", priority=1),
                                          inst(4, "r1", "z2", priority=1)))
    assert levels(build_load_assignment("echo", svc, Z1)) == {1: 0, 2: 1, 3: 2, 4: 3}


def json_levels(cla: dict[str, Any]) -> dict[int, int]:
    """port -> priority, from a ClusterLoadAssignment as JSON (proto3 JSON omits priority 0)."""
    return {e["endpoint"]["address"]["socketAddress"]["portValue"]: loc.get("priority", 0)
            for loc in cla["endpoints"] for e in loc["lbEndpoints"]}


# -- translation and the cache --------------------------------------------------------

class Fleet:
    """A registry, the owner's translator, cache and publisher, published by hand."""

    def __init__(self, default: bool = False, limit: int = 1000) -> None:
        self.registry = Registry(["s"])
        self.translator = translator(Config(xds=XdsConfig(locality_failover=default)))
        self.cache = SnapshotCache(Localities(self.translator.localities, limit))
        self.publisher = Publisher(self.registry, self.translator, self.cache, 0.0, None, {})

    def load(self, *services: Service) -> None:
        changed = self.registry.apply("s", FullSnapshot.of(list(services)))
        self.publisher.publish(changed)

    def change(self, *services: Service) -> None:
        self.publisher.publish(self.registry.apply("s", ServiceChange(upserted=services)))

    def served(self, view: Locality | None, name: str = "echo") -> dict[int, int]:
        snap = self.cache.get(view)
        assert snap is not None
        return levels(decoded(snap.get(ENDPOINT).resources[name]))


def test_a_locality_view_exists_while_a_node_of_it_watches() -> None:
    fleet = Fleet()
    fleet.load(spread(locality_failover=True), spread("plain"))
    # No node of z1 yet: a one-shot get gives the plain snapshot.
    assert fleet.served(Z1) == {1: 0, 2: 0, 3: 0} and fleet.cache.localities() == []
    ev1, ev2 = asyncio.Event(), asyncio.Event()
    fleet.cache.watch(Z1, ev1)
    fleet.cache.watch(Z1, ev2)
    assert ev1.is_set() and fleet.cache.localities() == [Z1] and REGISTRY.get_sample_value("xdscp_localities") == 1
    assert fleet.served(Z1) == {1: 0, 2: 1, 3: 2}
    assert fleet.served(Z1, "plain") == {1: 0, 2: 0, 3: 0}  # a service without the setting
    assert fleet.served(None) == {1: 0, 2: 0, 3: 0}  # a node without a locality
    fleet.cache.unwatch(Z1, ev1)
    assert fleet.cache.localities() == [Z1]  # one node of it is left
    fleet.cache.unwatch(Z1, ev2)
    assert fleet.cache.localities() == [] and len(fleet.translator.localities) == 0
    assert REGISTRY.get_sample_value("xdscp_localities") == 0


def test_what_does_not_depend_on_locality_is_shared_by_reference() -> None:
    fleet = Fleet()
    fleet.load(spread(locality_failover=True), spread("plain"))
    fleet.cache.watch(Z1, asyncio.Event())
    fleet.cache.watch(Z2, asyncio.Event())
    plain, z1, z2 = fleet.cache.get(), fleet.cache.get(Z1), fleet.cache.get(Z2)
    assert plain is not None and z1 is not None and z2 is not None
    for url in (CLUSTER, LISTENER, ROUTE):
        assert z1.get(url) is plain.get(url) and z2.get(url) is plain.get(url)
    assert z1.get(ENDPOINT).resources["plain"] is plain.get(ENDPOINT).resources["plain"]
    assert len({z1.get(ENDPOINT).version, z2.get(ENDPOINT).version, plain.get(ENDPOINT).version}) == 3


def test_a_locality_with_no_service_that_fails_over_is_the_plain_snapshot() -> None:
    fleet = Fleet()
    fleet.load(spread())
    fleet.cache.watch(Z1, asyncio.Event())
    assert fleet.cache.get(Z1) is fleet.cache.get()


def test_versions_are_content_hashes_equal_across_replicas() -> None:
    a, b = Fleet(), Fleet()
    a.cache.watch(Z1, asyncio.Event())  # opened before the load here, after it there
    a.load(spread(locality_failover=True))
    b.load(spread(locality_failover=True))
    b.cache.watch(Z1, asyncio.Event())
    sa, sb = a.cache.get(Z1), b.cache.get(Z1)
    assert sa is not None and sb is not None
    assert sa.get(ENDPOINT).version == sb.get(ENDPOINT).version and sa.version == sb.version


def test_one_instance_change_rebuilds_one_assignment_per_open_locality() -> None:
    fleet = Fleet(default=True)
    fleet.load(*[spread(f"s{i}") for i in range(20)])
    for loc in (Z1, Z2):
        fleet.cache.watch(loc, asyncio.Event())
    before = {loc: fleet.cache.get(loc).get(ENDPOINT) for loc in (Z1, Z2)}  # type: ignore[union-attr]
    moved = Service(name="s7", instances=(inst(1, "r1", "z1", healthy=False), inst(2, "r1", "z2"),
                                          inst(3, "r2", "z3")))
    fleet.change(moved)
    for loc in (Z1, Z2):
        after = fleet.cache.get(loc).get(ENDPOINT)  # type: ignore[union-attr]
        assert after.changed == {"s7"} and after.prev_version == before[loc].version
        for name in after.resources:
            if name != "s7":
                assert after.resources[name] is before[loc].resources[name]


async def test_a_large_locality_is_built_between_turns_of_the_event_loop() -> None:
    """Past SLICE services the first node of a locality waits while its assignments are
    built in slices; the loop serves everything else meanwhile, and changes made during
    the build are in the result."""
    count = SLICE * 3 + 7
    fleet = Fleet(default=True)
    fleet.load(*[spread(f"s{i}") for i in range(count)])
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    ev = asyncio.Event()
    fleet.cache.watch(Z1, ev)
    assert fleet.cache.get(Z1) is None and not ev.is_set()  # its node waits
    assert fleet.cache.get() is not None  # everyone else is served
    fleet.change(Service(name="s1", instances=spread().instances[1:]))  # z1's instance leaves s1
    fleet.publisher.publish(fleet.registry.apply("s", ServiceChange(removed=(spread("s2").key,))))
    fleet.change(spread("new"))
    await eventually(ev.is_set, what="the locality built")
    tick.cancel()
    assert ticks > 3, "the build did not yield to the event loop"
    snap = fleet.cache.get(Z1)
    assert snap is not None
    served = snap.get(ENDPOINT).resources
    assert len(served) == count - 1 + 1 and "s2" not in served
    assert levels(decoded(served["s1"])) == {2: 0, 3: 1} and levels(decoded(served["new"])) == {1: 0, 2: 1, 3: 2}
    # The same content as every assignment built at once from the final registry: same version.
    plain = fleet.cache.get()
    assert plain is not None
    at_once = plain.get(ENDPOINT).evolve({s.name: localized_assignment(s.name, s, Z1)
                                          for s in fleet.registry.services.values()}, ())
    assert at_once.version == snap.get(ENDPOINT).version


def test_the_setting_on_a_service_overrides_the_config_default() -> None:
    fleet = Fleet(default=True)
    fleet.load(spread(), spread("off", locality_failover=False))
    fleet.cache.watch(Z1, asyncio.Event())
    assert fleet.served(Z1) == {1: 0, 2: 1, 3: 2} and fleet.served(Z1, "off") == {1: 0, 2: 0, 3: 0}
    # Turned off while the view is open: the locality goes back to the plain assignment.
    fleet.change(spread(locality_failover=False))
    assert fleet.served(Z1) == {1: 0, 2: 0, 3: 0}
    assert fleet.cache.get(Z1).get(ENDPOINT).resources["echo"] is fleet.cache.get().get(ENDPOINT).resources["echo"]  # type: ignore[union-attr]
    fleet.change(spread(locality_failover=True))
    assert fleet.served(Z1) == {1: 0, 2: 1, 3: 2}


def test_removed_services_leave_every_locality() -> None:
    fleet = Fleet(default=True)
    fleet.load(spread(), spread("other"))
    fleet.cache.watch(Z1, asyncio.Event())
    fleet.load(spread("other"))
    assert set(fleet.cache.get(Z1).get(ENDPOINT).resources) == {"other"}  # type: ignore[union-attr]


def test_localities_past_the_limit_get_the_plain_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    fleet = Fleet(default=True, limit=1)
    fleet.load(spread())
    fleet.cache.watch(Z1, asyncio.Event())
    fleet.cache.watch(Z2, asyncio.Event())
    assert fleet.cache.localities() == [Z1]
    assert fleet.served(Z2) == {1: 0, 2: 0, 3: 0}
    over = [r.xdscp_fields for r in caplog.records if r.getMessage() == "locality.over_limit"]  # type: ignore[attr-defined]
    assert over == [{"locality": "r1/z2", "limit": 1, "hint": "its nodes get endpoints prioritised by source only"}]


def test_a_rest_poll_keeps_its_locality_built_for_a_while() -> None:
    fleet = Fleet(default=True)
    fleet.load(spread())
    snap = fleet.cache.lease(Z1, now=0.0)
    assert snap is not None and levels(decoded(snap.get(ENDPOINT).resources["echo"])) == {1: 0, 2: 1, 3: 2}
    fleet.change(Service(name="echo", instances=spread().instances[:2]))
    assert fleet.cache.localities() == []  # the lease (from time 0) ran out: closed at the publish
    fleet.cache.lease(Z1)
    fleet.change(spread())
    assert fleet.cache.localities() == [Z1] and fleet.served(Z1) == {1: 0, 2: 1, 3: 2}


# -- where the setting is set -----------------------------------------------------------

def test_the_setting_is_read_from_a_registry_file() -> None:
    doc = parse_registry_file(b"services:\n- name: echo\n  locality_failover: true\n  instances: []\n",
                              "registry.yaml")
    assert [s.locality_failover for s in doc] == [True]
    with pytest.raises(DocumentError, match="locality_failover"):
        parse_registry_file(b"services:\n- name: echo\n  locality_failover: sometimes\n", "registry.yaml")


# -- every face serves the node's locality ------------------------------------------------

def zone_node(node_id: str, loc: Locality) -> Node:
    return Node(id=node_id, cluster="ingress", locality=LocalityProto(region=loc.region, zone=loc.zone))


SPREAD = [{"name": "echo", "locality_failover": True, "instances": [
    {"host": "127.0.0.1", "port": 9001, "region": "r1", "zone": "z1"},
    {"host": "127.0.0.1", "port": 9002, "region": "r1", "zone": "z2"},
    {"host": "127.0.0.1", "port": 9003, "region": "r2", "zone": "z3"}]}]


async def test_sotw_and_delta_streams_are_served_their_locality(tmp_path: Path) -> None:
    async with running_plane(tmp_path, SPREAD) as plane, grpc.aio.insecure_channel(plane.target) as ch:
        sotw, delta = sotw_stream(ch), delta_stream(ch)
        sotw.send(sotw_request(ENDPOINT, ["echo"], with_node=zone_node("a", Z1)))
        delta.send(delta_request(ENDPOINT, ["echo"], with_node=zone_node("b", Z2)))
        plain = sotw_stream(ch)
        plain.send(sotw_request(ENDPOINT, ["echo"], with_node=Node(id="c", cluster="ingress")))
        r1, r2, r3 = await sotw.recv(), await delta.recv(), await plain.recv()
        assert levels(unpack(r1.resources[0])) == {9001: 0, 9002: 1, 9003: 2}
        assert levels(unpack(r2.resources[0].resource)) == {9001: 1, 9002: 0, 9003: 2}
        assert levels(unpack(r3.resources[0])) == {9001: 0, 9002: 0, 9003: 0}
        sotw.send(sotw_request(ENDPOINT, ["echo"], version=r1.version_info, nonce=r1.nonce))
        delta.send(delta_request(ENDPOINT, nonce=r2.nonce))
        # An instance change reaches each stream in its own priorities.
        plane.write([{**SPREAD[0], "instances": SPREAD[0]["instances"][1:]}])  # type: ignore[dict-item]
        r1, r2 = await sotw.recv(), await delta.recv()
        assert levels(unpack(r1.resources[0])) == {9002: 0, 9003: 1}
        assert levels(unpack(r2.resources[0].resource)) == {9002: 0, 9003: 1}
        status, dump = await plane.admin_json("/debug/config_dump?type=ClusterLoadAssignment&locality=r1/z1")
        assert status == 200 and dump["localities"] == ["r1/z1", "r1/z2"]
        assert json_levels(dump["types"][ENDPOINT]["resources"][0]) == {9002: 0, 9003: 1}  # z1 empty: region, then r2
        for s in (sotw, delta, plain):
            await s.close()
        # z2's view closes with its node; z1's stays for the lease the debug dump took on it.
        await eventually(lambda: plane.cp.cache.localities() == [Z1], what="z2's view closed with its node")


async def test_rest_polls_are_served_their_locality(tmp_path: Path) -> None:
    async with running_plane(tmp_path, SPREAD) as plane:
        body = json.dumps({"node": {"id": "poller", "locality": {"region": "r1", "zone": "z2"}},
                           "resource_names": ["echo"]}).encode()

        def poll() -> Any:
            req = urllib.request.Request(f"http://127.0.0.1:{plane.cp.admin_port}/v3/discovery:endpoints",
                                         data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())

        answer = await asyncio.to_thread(poll)
        assert json_levels(answer["resources"][0]) == {9001: 1, 9002: 0, 9003: 2}


def test_worker_processes_serve_each_locality_from_the_owner(tmp_path: Path) -> None:
    """With --workers 2, streams land on either process (SO_REUSEPORT); every one is served
    its locality. A worker asks the owner as a node of the locality: the owner's streams
    show that relay, so the test knows a worker took one."""
    registry = tmp_path / "registry.yaml"
    write_registry(registry, SPREAD)
    xdscp = XdscpProcess(tmp_path, registry, xds_settings={"workers": 2}).start()

    async def one_stream(i: int) -> dict[int, int]:
        async with grpc.aio.insecure_channel(xdscp.xds_address) as ch:
            s = sotw_stream(ch)
            s.send(sotw_request(ENDPOINT, ["echo"], with_node=zone_node(f"n{i}", Z2)))
            resp = await s.recv(timeout=20)
            relayed = [n for n in xdscp.admin("/debug/nodes")["nodes"]
                       if n["cluster"] == "xdscp-workers" and n["locality"] == "r1/z2"]
            await s.close()
            return {**levels(unpack(resp.resources[0])), -1: len(relayed)}

    try:
        until(lambda: any(n["cluster"] == "xdscp-workers" for n in xdscp.admin("/debug/nodes")["nodes"]),
              timeout=20, what="the worker's relay connected")
        seen_relay = False
        for i in range(40):  # each connection lands on one of two processes; 40 misses: 2^-40
            got = asyncio.run(one_stream(i))
            seen_relay = seen_relay or got.pop(-1) > 0
            assert got == {9001: 1, 9002: 0, 9003: 2}, (i, got)
            if seen_relay:
                break
        assert seen_relay, "no stream reached the worker"
    finally:
        xdscp.stop()


async def test_dump_shows_what_a_locality_is_served(tmp_path: Path) -> None:
    async with running_plane(tmp_path, SPREAD) as plane:
        admin = f"127.0.0.1:{plane.cp.admin_port}"
        code, out = await xdscp_cli("dump", "--admin", admin, "--type", "ClusterLoadAssignment",
                                    "--locality", "r1/z2")
        assert code == 0, out
        dump = json.loads(out[out.index("{"):])  # after the note that no node is connected
        assert dump["locality"] == "r1/z2"
        assert json_levels(dump["types"][ENDPOINT]["resources"][0]) == {9001: 1, 9002: 0, 9003: 2}
        code, out = await xdscp_cli("dump", "--admin", admin, "--locality", "z2")
        assert code == 2 and "locality must be REGION/ZONE" in out, out
