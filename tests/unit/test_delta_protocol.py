"""Delta (incremental) xDS protocol rules, checked against the real server over gRPC."""

from __future__ import annotations

import grpc

from xdscp.type_urls import CLUSTER, ENDPOINT, LISTENER

from plane import Plane, service
from xds_client import delta_request, delta_stream, node, unpack


def names(resp) -> list[str]:
    return sorted(r.name for r in resp.resources)


async def test_wildcard_then_ack_gets_no_response(channel) -> None:
    s = delta_stream(channel)
    s.send(delta_request(CLUSTER, with_node=node()))  # legacy wildcard: subscribes to nothing named
    resp = await s.recv()
    assert names(resp) == ["api", "echo"]
    assert all(r.version for r in resp.resources)
    assert unpack(resp.resources[0].resource).name == resp.resources[0].name
    s.send(delta_request(CLUSTER, nonce=resp.nonce))
    await s.expect_silence()
    await s.close()


async def test_subscribe_unsubscribe_and_star(plane: Plane, channel) -> None:
    s = delta_stream(channel)
    s.send(delta_request(ENDPOINT, ["echo"], with_node=node()))
    first = await s.recv()
    assert names(first) == ["echo"]
    s.send(delta_request(ENDPOINT, ["api"], nonce=first.nonce))
    second = await s.recv()
    assert names(second) == ["api"]  # only the new subscription, not echo again
    s.send(delta_request(ENDPOINT, unsubscribe=["echo"], nonce=second.nonce))
    await s.expect_silence(0.2)
    plane.write([service("echo", 9001), service("api", 9101)])  # echo changes; no longer wanted
    await s.expect_silence()
    plane.write([service("echo", 9001), service("api", 9101, 9102)])
    assert names(await s.recv()) == ["api"]
    await s.close()

    star = delta_stream(channel)
    star.send(delta_request(CLUSTER, ["*"], with_node=node()))
    assert names(await star.recv()) == ["api", "echo"]
    await star.close()


async def test_unknown_eds_name_gets_an_empty_assignment_then_the_real_one(plane: Plane, channel) -> None:
    s = delta_stream(channel)
    s.send(delta_request(ENDPOINT, ["later"], with_node=node()))
    first = await s.recv()
    cla = unpack(first.resources[0].resource)
    assert cla.cluster_name == "later" and len(cla.endpoints) == 0
    s.send(delta_request(ENDPOINT, nonce=first.nonce))
    plane.write([service("echo", 9001, 9002), service("api", 9101), service("later", 9201)])
    resp = await s.recv()
    assert names(resp) == ["later"]
    assert len(unpack(resp.resources[0].resource).endpoints) == 1
    await s.close()


async def test_removed_service_is_sent_in_removed_resources(plane: Plane, channel) -> None:
    s = delta_stream(channel)
    s.send(delta_request(CLUSTER, with_node=node()))
    first = await s.recv()
    s.send(delta_request(CLUSTER, nonce=first.nonce))
    plane.write([service("echo", 9001, 9002)])
    resp = await s.recv()
    assert list(resp.removed_resources) == ["api"]
    assert len(resp.resources) == 0
    await s.close()


async def test_nack_is_recorded_and_not_answered_in_a_loop(plane: Plane, channel) -> None:
    s = delta_stream(channel)
    s.send(delta_request(CLUSTER, with_node=node("delta-nacker")))
    resp = await s.recv()
    s.send(delta_request(CLUSTER, nonce=resp.nonce, error="rejected: because"))
    await s.expect_silence()
    _, body = await plane.admin_json("/debug/nodes")
    cds = next(n for n in body["nodes"] if n["node_id"] == "delta-nacker")["types"][CLUSTER]
    assert cds["last_nack"] == "rejected: because" and cds["nacks"] == 1
    assert cds["version_sent"] == resp.system_version_info
    await s.close()


async def test_stale_nonce_never_blocks_subscription_changes(plane: Plane, channel) -> None:
    s = delta_stream(channel)
    s.send(delta_request(ENDPOINT, ["echo"], with_node=node()))
    first = await s.recv()
    s.send(delta_request(ENDPOINT, nonce=first.nonce))
    plane.write([service("echo", 9001), service("api", 9101)])
    second = await s.recv()
    assert second.nonce != first.nonce
    s.send(delta_request(ENDPOINT, ["api"], nonce=first.nonce))  # stale nonce, new subscription
    third = await s.recv()
    assert names(third) == ["api"]
    await s.close()


async def test_reconnect_with_initial_versions_resends_only_what_changed(plane: Plane, channel) -> None:
    s = delta_stream(channel)
    s.send(delta_request(CLUSTER, with_node=node()))
    first = await s.recv()
    held = {r.name: r.version for r in first.resources}
    await s.close()
    # While the client is away: api's settings change, and a service is added.
    plane.write([service("echo", 9001, 9002), service("api", 9101, lb_policy="RANDOM"), service("new", 9301)])
    await plane.wait_published(2)
    again = delta_stream(channel)
    again.send(delta_request(CLUSTER, with_node=node(), initial=held))
    resp = await again.recv()
    assert names(resp) == ["api", "new"]  # echo is unchanged: not re-sent
    await again.close()

    gone = {**held, "deleted-while-away": "v1"}
    third = delta_stream(channel)
    third.send(delta_request(CLUSTER, with_node=node(), initial=gone))
    resp = await third.recv()
    assert list(resp.removed_resources) == ["deleted-while-away"]
    await third.close()


async def test_reconnect_with_everything_current_gets_no_response(channel) -> None:
    s = delta_stream(channel)
    s.send(delta_request(LISTENER, with_node=node()))
    first = await s.recv()
    await s.close()
    again = delta_stream(channel)
    again.send(delta_request(LISTENER, with_node=node(),
                             initial={r.name: r.version for r in first.resources}))
    await again.expect_silence()
    await again.close()


async def test_named_cds_subscription_to_missing_cluster_is_reported_removed(channel) -> None:
    s = delta_stream(channel)
    s.send(delta_request(CLUSTER, ["echo", "ghost"], with_node=node()))
    resp = await s.recv()
    assert names(resp) == ["echo"]
    assert list(resp.removed_resources) == ["ghost"]
    await s.close()


async def test_per_type_delta_service(channel) -> None:
    s = delta_stream(channel, "/envoy.service.endpoint.v3.EndpointDiscoveryService/DeltaEndpoints")
    s.send(delta_request("", ["echo"], with_node=node()))
    resp = await s.recv()
    assert resp.type_url == ENDPOINT and names(resp) == ["echo"]
    await s.close()
    bad = delta_stream(channel)
    bad.send(delta_request("", ["echo"], with_node=node()))
    assert await bad.closed_with() == grpc.StatusCode.INVALID_ARGUMENT


async def test_legacy_wildcard_survives_a_later_named_subscription(plane: Plane, channel) -> None:
    # Envoy's delta client counts a first request naming nothing as subscribed to "*" and
    # keeps that when it later adds names (it re-sends "*" explicitly only on reconnect).
    s = delta_stream(channel)
    s.send(delta_request(CLUSTER, with_node=node()))
    first = await s.recv()
    s.send(delta_request(CLUSTER, ["extra"], nonce=first.nonce))
    extra = await s.recv()
    assert list(extra.removed_resources) == ["extra"]  # named and missing: reported absent
    s.send(delta_request(CLUSTER, nonce=extra.nonce))
    plane.write([service("echo", 9001, 9002), service("api", 9101), service("newcomer", 9401)])
    resp = await s.recv()
    assert names(resp) == ["newcomer"]  # still wildcard: an unnamed new cluster arrives
    await s.close()


async def test_a_deleted_services_assignment_is_reported_removed(plane: Plane, channel) -> None:
    s = delta_stream(channel)
    s.send(delta_request(ENDPOINT, ["api", "echo"], with_node=node()))
    first = await s.recv()
    assert sorted(names(first)) == ["api", "echo"]
    s.send(delta_request(ENDPOINT, nonce=first.nonce))
    plane.write([service("echo", 9001, 9002)])  # "api" deleted; its client is still subscribed
    resp = await s.recv()
    assert list(resp.removed_resources) == ["api"] and len(resp.resources) == 0
    s.send(delta_request(ENDPOINT, nonce=resp.nonce))
    plane.write([service("echo", 9001), service("api", 9101)])  # back, and echo changed
    resp = await s.recv()
    assert sorted(names(resp)) == ["api", "echo"] and not resp.removed_resources
    await s.close()
