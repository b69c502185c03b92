"""The SotW and Delta state machines driven directly, without gRPC: a stream that falls
several snapshots behind, subscription changes between responses, and the per-stream
state an idle stream keeps (shared, not copied)."""

from __future__ import annotations

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)

from xdscp.cache.resource import Resource
from xdscp.cache.snapshot import Snapshot, TypeSnapshot
from xdscp.server.delta import DeltaStream
from xdscp.server.sotw import SotwStream
from xdscp.server.stream import ServerEnv
from xdscp.translation.placeholders import missing_resource
from xdscp.type_urls import CLUSTER, ENDPOINT

from server_env import server_env


def feed(stream: SotwStream | DeltaStream, req: DiscoveryRequest | DeltaDiscoveryRequest) -> None:
    """Apply ``req`` as the stream would on receiving its bytes."""
    stream.on_request(req, req.SerializeToString())


def cla(name: str, port: int) -> Resource:
    msg = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    ep = msg.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    ep.address, ep.port_value = "10.0.0.1", port
    return Resource.of(ENDPOINT, name, msg)


def snap(ts: TypeSnapshot) -> Snapshot:
    return Snapshot({ENDPOINT: ts})


def sotw_names(raw: bytes | None) -> list[str]:
    assert raw is not None
    out = []
    for any_ in DiscoveryResponse.FromString(raw).resources:
        c = endpoint_pb2.ClusterLoadAssignment()
        any_.Unpack(c)
        out.append(c.cluster_name)
    return out


def delta_parts(raw: bytes | None) -> tuple[list[str], list[str]]:
    assert raw is not None
    r = DeltaDiscoveryResponse.FromString(raw)
    return [x.name for x in r.resources], list(r.removed_resources)


NAMES = [f"svc-{i}" for i in range(10)]
V1 = TypeSnapshot.build(ENDPOINT, [cla(n, 80) for n in NAMES])


def sotw_synced(e: ServerEnv, names: list[str]) -> tuple[SotwStream, str]:
    s = SotwStream(e, None, "test")
    feed(s, DiscoveryRequest(type_url=ENDPOINT, resource_names=names, node={"id": "n"}))
    first = s.respond(ENDPOINT, snap(V1))
    assert sorted(sotw_names(first)) == sorted(names)
    nonce = DiscoveryResponse.FromString(first).nonce  # type: ignore[arg-type]
    feed(s, DiscoveryRequest(type_url=ENDPOINT, resource_names=names, version_info=V1.version,
                                  response_nonce=nonce))
    assert s.respond(ENDPOINT, snap(V1)) is None  # the ACK asks for nothing new
    return s, nonce


def test_sotw_stream_several_versions_behind_gets_exactly_what_changed() -> None:
    s, _ = sotw_synced(server_env(), NAMES)
    v2 = V1.evolve({"svc-1": cla("svc-1", 81)}, ())
    v3 = v2.evolve({"svc-2": cla("svc-2", 82)}, ["svc-3"])
    v4 = v3.evolve({"svc-1": cla("svc-1", 80)}, ())  # back to what the client holds
    assert v4.prev_version != V1.version  # the stream skipped v2 and v3: no shortcut applies
    # svc-3 is gone: a SotW EDS client gets an empty assignment for it.
    assert sotw_names(s.respond(ENDPOINT, snap(v4))) == ["svc-2", "svc-3"]


def test_sotw_subscription_change_sends_only_new_names_and_resends_a_returning_one() -> None:
    s, nonce = sotw_synced(server_env(), NAMES[:5])
    feed(s, DiscoveryRequest(type_url=ENDPOINT, resource_names=NAMES[:3] + NAMES[5:7],
                                  version_info=V1.version, response_nonce=nonce))
    out = s.respond(ENDPOINT, snap(V1))
    assert sotw_names(out) == ["svc-5", "svc-6"]
    nonce = DiscoveryResponse.FromString(out).nonce  # type: ignore[arg-type]
    feed(s, DiscoveryRequest(type_url=ENDPOINT, resource_names=NAMES[:5],
                                  version_info=V1.version, response_nonce=nonce))
    assert sotw_names(s.respond(ENDPOINT, snap(V1))) == ["svc-3", "svc-4"]  # dropped, then asked again


def test_sotw_streams_with_one_subscription_share_its_names() -> None:
    e = server_env()
    a, _ = sotw_synced(e, NAMES)
    b, _ = sotw_synced(e, NAMES)
    assert a.types[ENDPOINT].names is b.types[ENDPOINT].names
    assert a.types[ENDPOINT].held is b.types[ENDPOINT].held is V1


def delta_synced(e: ServerEnv, names: list[str]) -> tuple[DeltaStream, str]:
    s = DeltaStream(e, None, "test")
    feed(s, DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=names, node={"id": "n"}))
    first = s.respond(ENDPOINT, snap(V1))
    assert sorted(delta_parts(first)[0]) == sorted(names)
    nonce = DeltaDiscoveryResponse.FromString(first).nonce  # type: ignore[arg-type]
    feed(s, DeltaDiscoveryRequest(type_url=ENDPOINT, response_nonce=nonce))
    assert s.respond(ENDPOINT, snap(V1)) is None
    return s, nonce


def test_delta_stream_several_versions_behind_gets_exactly_what_changed() -> None:
    s, _ = delta_synced(server_env(), NAMES)
    v2 = V1.evolve({"svc-1": cla("svc-1", 81)}, ())
    v3 = v2.evolve({"svc-2": cla("svc-2", 82)}, ["svc-3"])
    v4 = v3.evolve({"svc-1": cla("svc-1", 80)}, ())
    # A subscribed assignment the client held and that is gone is reported removed (xDS: Delta
    # says a subscribed resource does not exist), not replaced by the empty stand-in.
    assert delta_parts(s.respond(ENDPOINT, snap(v4))) == (["svc-2"], ["svc-3"])


def test_a_change_reaches_only_the_streams_subscribed_to_it() -> None:
    """As on-demand Envoys hold a few services each: a change to one is answered on the
    streams that hold it, and the others have nothing to send."""
    env = server_env()
    holders = [delta_synced(env, ["svc-1", "svc-2"])[0], delta_synced(env, ["svc-1", "svc-7"])[0]]
    others = [delta_synced(env, ["svc-3", "svc-4"])[0], delta_synced(env, ["svc-8"])[0]]
    v2 = V1.evolve({"svc-1": cla("svc-1", 81)}, ())
    assert [delta_parts(h.respond(ENDPOINT, snap(v2))) for h in holders] == [(["svc-1"], [])] * 2
    assert [o.respond(ENDPOINT, snap(v2)) for o in others] == [None, None]


def test_delta_a_gone_assignment_is_removed_once_and_comes_back_when_its_service_does() -> None:
    s, _ = delta_synced(server_env(), NAMES)
    v2 = V1.evolve({}, ["svc-3"])
    assert delta_parts(s.respond(ENDPOINT, snap(v2))) == ([], ["svc-3"])
    v3 = v2.evolve({"svc-1": cla("svc-1", 81)}, ())
    assert delta_parts(s.respond(ENDPOINT, snap(v3))) == (["svc-1"], [])  # said once: no stand-in, no repeat
    s.types[ENDPOINT].full = True  # a full comparison (as after a reconnect) says nothing more either
    assert s.respond(ENDPOINT, snap(v3)) is None
    v4 = v3.evolve({"svc-3": cla("svc-3", 90)}, ())
    assert delta_parts(s.respond(ENDPOINT, snap(v4))) == (["svc-3"], [])
    v5 = v4.evolve({}, ["svc-3"])
    assert delta_parts(s.respond(ENDPOINT, snap(v5))) == ([], ["svc-3"])


def test_delta_a_name_never_served_still_gets_the_empty_stand_in() -> None:
    s = DeltaStream(server_env(), None, "test")
    feed(s, DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=["later"], node={"id": "n"}))
    assert delta_parts(s.respond(ENDPOINT, snap(V1))) == (["later"], [])  # no cluster warms forever


def test_delta_unsubscribe_then_subscribe_again_resends() -> None:
    s, nonce = delta_synced(server_env(), NAMES[:4])
    feed(s, DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_unsubscribe=["svc-0"],
                                       resource_names_subscribe=["svc-5"], response_nonce=nonce))
    out = s.respond(ENDPOINT, snap(V1))
    assert delta_parts(out) == (["svc-5"], [])
    nonce = DeltaDiscoveryResponse.FromString(out).nonce  # type: ignore[arg-type]
    feed(s, DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=["svc-0", "svc-1"],
                                       response_nonce=nonce))
    # svc-0 came back, svc-1 was asked again: both are sent (xDS: re-subscribing re-requests).
    assert delta_parts(s.respond(ENDPOINT, snap(V1))) == (["svc-0", "svc-1"], [])


def test_delta_wildcard_removal_after_lagging() -> None:
    s = DeltaStream(server_env(), None, "test")
    feed(s, DeltaDiscoveryRequest(type_url=ENDPOINT, node={"id": "n"}))  # legacy wildcard
    assert sorted(delta_parts(s.respond(ENDPOINT, snap(V1)))[0]) == NAMES
    v2 = V1.evolve({}, ["svc-4"])
    v3 = v2.evolve({"svc-11": cla("svc-11", 80)}, ["svc-5"])
    assert delta_parts(s.respond(ENDPOINT, snap(v3))) == (["svc-11"], ["svc-4", "svc-5"])
    assert s.respond(ENDPOINT, snap(v3)) is None


def test_delta_streams_with_one_subscription_share_its_names_and_keep_no_map() -> None:
    e = server_env()
    a, _ = delta_synced(e, NAMES)
    b, _ = delta_synced(e, list(reversed(NAMES)))
    sa, sb = a.types[ENDPOINT], b.types[ENDPOINT]
    assert sa.names is sb.names
    assert sa.held is sb.held is V1
    assert not sa.overrides and not sb.overrides and not sa.pending


def test_delta_leaving_and_rejoining_the_wildcard_between_responses_resends() -> None:
    s = DeltaStream(server_env(), None, "test")
    feed(s, DeltaDiscoveryRequest(type_url=ENDPOINT, node={"id": "n"}))  # legacy wildcard
    first = s.respond(ENDPOINT, snap(V1))
    nonce = DeltaDiscoveryResponse.FromString(first).nonce  # type: ignore[arg-type]
    # Two requests before the stream answers: leaving the wildcard lets the client drop
    # what only the wildcard gave it, so rejoining must send those again.
    feed(s, DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_unsubscribe=["*"],
                                       resource_names_subscribe=["svc-0"], response_nonce=nonce))
    feed(s, DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=["*"]))
    # (svc-0 is sent too: naming a resource in a subscribe asks for it again.)
    assert sorted(delta_parts(s.respond(ENDPOINT, snap(V1)))[0]) == NAMES


def test_delta_answers_a_new_subscription_even_when_there_is_nothing() -> None:
    s = DeltaStream(server_env(), None, "test")
    feed(s, DeltaDiscoveryRequest(type_url=ENDPOINT, node={"id": "n"}))  # wildcard, none exist
    empty = TypeSnapshot.empty(ENDPOINT)
    out = s.respond(ENDPOINT, snap(empty))
    assert out is not None and delta_parts(out) == ([], [])
    assert DeltaDiscoveryResponse.FromString(out).system_version_info == empty.version
    assert s.respond(ENDPOINT, snap(empty)) is None  # answered once, not on every wake


def test_first_answers_to_one_subscription_share_one_body() -> None:
    e = server_env()
    a, _ = sotw_synced(e, NAMES)
    ts = a.types[ENDPOINT].held
    assert ts is V1
    body = V1.subset_body(a.types[ENDPOINT].names, False, missing_resource)
    assert body is not None and body[1] == len(NAMES)
    again = V1.subset_body(frozenset(NAMES), False, missing_resource)
    assert again is not None and again[0] is body[0]  # joined once, not per stream
    # A name with neither a resource nor a stand-in (CDS has none) takes the slow path.
    assert TypeSnapshot.build(CLUSTER, []).subset_body(frozenset({"x"}), False, missing_resource) is None


def test_the_names_digest_is_the_same_in_place_or_re_encoded() -> None:
    from xdscp.cache import wire
    from xdscp.server.sotw import _names_block, _names_digest

    names = [f"svc-{i}" for i in range(50)]
    ack = DiscoveryRequest(version_info="v7", type_url=ENDPOINT, resource_names=names, response_nonce="3-9")
    first = DiscoveryRequest(type_url=ENDPOINT, resource_names=names, node={"id": "envoy-1", "cluster": "c"})
    raw = ack.SerializeToString()
    assert _names_block(raw, ack) is not None  # field order: hashed in place
    digest = _names_digest(raw, DiscoveryRequest.FromString(raw))
    assert _names_digest(first.SerializeToString(), first) == digest  # the node before the names is skipped
    # The same request with its fields in another order (any encoder may): re-encoded, same digest.
    shuffled = (wire.string_field(4, ENDPOINT) + b"".join(wire.string_field(3, n) for n in names)
                + wire.string_field(5, "3-9") + wire.string_field(1, "v7"))
    parsed = DiscoveryRequest.FromString(shuffled)
    assert list(parsed.resource_names) == names and _names_block(shuffled, parsed) is None
    assert _names_digest(shuffled, parsed) == digest
    nack = DiscoveryRequest(type_url=ENDPOINT, resource_names=names, response_nonce="3-9",
                            error_detail={"message": "no"})
    assert _names_block(nack.SerializeToString(), nack) is None
    assert _names_digest(nack.SerializeToString(), nack) == digest
    other = DiscoveryRequest(version_info="v7", type_url=ENDPOINT, resource_names=names[:-1], response_nonce="3-9")
    assert _names_digest(other.SerializeToString(), other) != digest
    empty = DiscoveryRequest(version_info="v7", type_url=ENDPOINT, response_nonce="3-9")
    block = _names_block(empty.SerializeToString(), empty)
    assert block is not None and bytes(block) == b""


def test_only_a_request_that_changes_the_subscription_wakes_the_writer() -> None:
    s = SotwStream(server_env(), None, "test")
    first = DiscoveryRequest(type_url=ENDPOINT, resource_names=NAMES[:3], node={"id": "n"})
    assert s.on_request(first, first.SerializeToString()) is True
    out = DiscoveryResponse.FromString(s.respond(ENDPOINT, snap(V1)))  # type: ignore[arg-type]
    ack = DiscoveryRequest(type_url=ENDPOINT, resource_names=NAMES[:3], version_info=out.version_info,
                           response_nonce=out.nonce)
    assert s.on_request(ack, ack.SerializeToString()) is False  # a plain ACK: nothing to send
    more = DiscoveryRequest(type_url=ENDPOINT, resource_names=NAMES[:4], version_info=out.version_info,
                            response_nonce=out.nonce)
    assert s.on_request(more, more.SerializeToString()) is True
    d = DeltaStream(server_env(), None, "test")
    sub = DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=NAMES[:3], node={"id": "n"})
    assert d.on_request(sub, sub.SerializeToString()) is True
    resp = DeltaDiscoveryResponse.FromString(d.respond(ENDPOINT, snap(V1)))  # type: ignore[arg-type]
    dack = DeltaDiscoveryRequest(type_url=ENDPOINT, response_nonce=resp.nonce)
    assert d.on_request(dack, dack.SerializeToString()) is False
    unsub = DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_unsubscribe=NAMES[:1], response_nonce=resp.nonce)
    assert d.on_request(unsub, unsub.SerializeToString()) is True
