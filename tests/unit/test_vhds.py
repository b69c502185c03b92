"""VHDS over Delta ADS (``listener.on_demand``), against the real server over gRPC: a virtual
host is asked for by Host, answered with the requested name as its alias, a Host with no
service is answered "no such virtual host", and a service that comes later is pushed."""

from __future__ import annotations

from pathlib import Path

import grpc
from envoy.config.route.v3 import route_components_pb2
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryResponse

from xdscp.cache.resource import Resource
from xdscp.server.vhds import resolve, with_aliases
from xdscp.type_urls import LISTENER, ROUTE, VIRTUAL_HOST

from plane import running_plane, service
from xds_client import delta_request, delta_stream, node, unpack


def test_a_requested_name_resolves_to_the_service_its_host_names() -> None:
    assert resolve("ingress_http/echo") == "ingress_http/echo"
    assert resolve("ingress_http/Echo:10000") == "ingress_http/echo"
    assert resolve("ingress_http/[::1]:80") == "ingress_http/[::1]"
    assert resolve("ingress_http/") == "ingress_http/"
    assert resolve("nonamespace") == "nonamespace"


def test_aliases_are_added_to_an_encoded_entry_without_touching_the_rest() -> None:
    vh = route_components_pb2.VirtualHost(name="r/echo", domains=["echo"])
    res = Resource.of(VIRTUAL_HOST, "r/echo", vh)
    msg = DeltaDiscoveryResponse.FromString(with_aliases(res.delta_entry, ["r/echo:80", "r/ECHO"]))
    [entry] = msg.resources
    assert (entry.name, entry.version, list(entry.aliases)) == ("r/echo", res.version, ["r/echo:80", "r/ECHO"])
    assert route_components_pb2.VirtualHost.FromString(entry.resource.value) == vh


async def test_vhds_answers_by_host_says_what_is_unknown_and_pushes_what_comes_later(tmp_path: Path) -> None:
    async with running_plane(tmp_path, [service("echo", 9001)], listener={
            "address": "127.0.0.1", "port": 10000, "on_demand": True}) as plane:
        async with grpc.aio.insecure_channel(plane.target) as ch:
            s = delta_stream(ch)
            s.send(delta_request(LISTENER, with_node=node()))
            lds = await s.recv()
            s.send(delta_request(LISTENER, nonce=lds.nonce))
            s.send(delta_request(ROUTE, ["ingress_http"]))
            rds = await s.recv()
            rc = unpack(rds.resources[0].resource)
            assert not rc.virtual_hosts and rc.vhds.config_source.HasField("ads")
            s.send(delta_request(ROUTE, nonce=rds.nonce))
            # Envoy's first VHDS request names nothing; the answer marks the namespace, sends no host
            s.send(delta_request(VIRTUAL_HOST))
            first = await s.recv()
            assert [(r.name, r.HasField("resource")) for r in first.resources] == [("ingress_http/", False)]
            s.send(delta_request(VIRTUAL_HOST, ["ingress_http/echo:10000"], nonce=first.nonce))
            found = await s.recv()
            [vh] = found.resources
            assert (vh.name, list(vh.aliases)) == ("ingress_http/echo", ["ingress_http/echo:10000"])
            assert route_components_pb2.VirtualHost.FromString(vh.resource.value).domains == ["echo", "echo:*"]
            s.send(delta_request(VIRTUAL_HOST, ["ingress_http/later"], nonce=found.nonce))
            unknown = await s.recv()
            [none] = unknown.resources
            assert (none.name, list(none.aliases), none.HasField("resource")) == (
                "ingress_http/later", ["ingress_http/later"], False)
            s.send(delta_request(VIRTUAL_HOST, nonce=unknown.nonce))
            plane.write([service("echo", 9001), service("later", 9002)])
            pushed = await s.recv()
            assert [r.name for r in pushed.resources] == ["ingress_http/later"] and pushed.resources[0].resource
            assert list(pushed.resources[0].aliases) == []  # the alias answered its own request, once
            s.send(delta_request(VIRTUAL_HOST, nonce=pushed.nonce))
            plane.write([service("later", 9002)])  # echo deleted: its virtual host goes
            gone = await s.recv()
            assert list(gone.removed_resources) == ["ingress_http/echo"] and not gone.resources
            await s.close()


async def test_unknown_hosts_past_the_limit_are_forgotten_oldest_first_and_the_stream_stays(tmp_path: Path) -> None:
    """Any client of the gateway can send any Host, and Envoy keeps each one it asked
    about subscribed: past max_names unknown ones the oldest are dropped, never the stream."""
    async with running_plane(tmp_path, [service("echo", 9001)], xds={"limits": {"max_names": 2}}, listener={
            "address": "127.0.0.1", "port": 10000, "on_demand": True}) as plane:
        async with grpc.aio.insecure_channel(plane.target) as ch:
            s = delta_stream(ch)
            s.send(delta_request(VIRTUAL_HOST, with_node=node()))
            nonce = (await s.recv()).nonce
            for host in ("a", "b", "c"):
                s.send(delta_request(VIRTUAL_HOST, [f"ingress_http/{host}"], nonce=nonce))
                answer = await s.recv()
                assert [r.name for r in answer.resources] == [f"ingress_http/{host}"]  # unknown, answered
                nonce = answer.nonce
            s.send(delta_request(VIRTUAL_HOST, nonce=nonce))
            plane.write([service("echo", 9001), service("a", 9002), service("c", 9003)])
            pushed = await s.recv()
            assert [r.name for r in pushed.resources] == ["ingress_http/c"]  # "a" was forgotten, "c" kept
            s.send(delta_request(VIRTUAL_HOST, nonce=pushed.nonce))
            s.send(delta_request(VIRTUAL_HOST, ["ingress_http/echo"]))
            assert [r.name for r in (await s.recv()).resources] == ["ingress_http/echo"]  # still serving
            await s.close()


async def test_a_reconnect_is_sent_only_what_changed_while_away_never_every_virtual_host(tmp_path: Path) -> None:
    """After a reconnect Envoy names "*" beside the Hosts it holds, and lists as held with no
    version the names it was told have no virtual host (the namespace's marker included).
    "*" is the namespace, not the registry: the Envoy is sent what it holds that changed
    (here a service created under a Host it was told was unknown) and nothing else."""
    services = [service("echo", 9001), *(service(f"unused-{i}", 9100 + i) for i in range(5))]
    async with running_plane(tmp_path, services, listener={
            "address": "127.0.0.1", "port": 10000, "on_demand": True}) as plane:
        async with grpc.aio.insecure_channel(plane.target) as ch:
            s = delta_stream(ch)
            s.send(delta_request(VIRTUAL_HOST, with_node=node()))
            nonce = (await s.recv()).nonce
            held: dict[str, str] = {"ingress_http/": ""}
            for host in ("echo:10000", "nosuch", "later"):
                s.send(delta_request(VIRTUAL_HOST, [f"ingress_http/{host}"], nonce=nonce))
                answer = await s.recv()
                held |= {r.name: r.version for r in answer.resources}
                nonce = answer.nonce
            assert held == {"ingress_http/": "", "ingress_http/echo": held["ingress_http/echo"],
                            "ingress_http/nosuch": "", "ingress_http/later": ""} and held["ingress_http/echo"]
            s.send(delta_request(VIRTUAL_HOST, nonce=nonce))
            plane.write([*services, service("later", 9002)])
            assert [r.name for r in (await s.recv()).resources] == ["ingress_http/later"]  # in the snapshot now
            await s.close()

            # the reconnect, as Envoy 1.40 sends it, from before "later" was pushed
            r = delta_stream(ch)
            r.send(delta_request(VIRTUAL_HOST, ["*", "ingress_http/echo:10000", "ingress_http/nosuch",
                                                "ingress_http/later"], initial=held, with_node=node()))
            resumed = await r.recv()
            assert [(e.name, list(e.aliases)) for e in resumed.resources] == [
                ("ingress_http/later", ["ingress_http/later"])] and resumed.resources[0].resource
            assert not resumed.removed_resources
            r.send(delta_request(VIRTUAL_HOST, nonce=resumed.nonce))
            await r.close()

            # a reconnect that holds all it would be sent is sent nothing: the next answer
            # on the stream is to the next request
            held["ingress_http/later"] = resumed.resources[0].version
            q = delta_stream(ch)
            q.send(delta_request(VIRTUAL_HOST, ["*", "ingress_http/echo", "ingress_http/nosuch", "ingress_http/later"],
                                 initial=held, with_node=node()))
            q.send(delta_request(VIRTUAL_HOST, ["ingress_http/unused-3"]))
            nxt = await q.recv()
            assert [e.name for e in nxt.resources] == ["ingress_http/unused-3"] and not nxt.removed_resources
            await q.close()
