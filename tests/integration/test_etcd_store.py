"""The embedded registry replicated through a real etcd (``store: etcd``), replicas in one process.

Each replica is an EmbeddedSource with its own Registry, as in separate processes; they share
nothing but etcd. The multi-process test with Envoy is test_etcd_replicas.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from xdscp.config import Config, EmbeddedEtcdConfig, EmbeddedSourceConfig, InstanceCheckConfig
from xdscp.local.etcd import EtcdServer, etcd_binary, etcd_cluster
from xdscp.model.registry import Registry
from xdscp.model.service import Instance, Service, ServiceKey
from xdscp.runtime_settings import embedded_settings, translator
from xdscp.sources.embedded.contract import CheckTarget, StoreUnavailable
from xdscp.sources.embedded.etcd_store import EtcdStore
from xdscp.sources.embedded.ref_times import wall_ms
from xdscp.sources.embedded.source import EmbeddedSource

from nacos_go_sdk_cache import GoSdkCache
from nacos_grpc_client import Client, grpc_port, register
from plane import Plane, start_plane
from waiting import eventually

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd not installed: make sysdeps installs etcd-server")

ECHO = ServiceKey("public", "DEFAULT_GROUP", "echo")


@dataclass
class Replica:
    source: EmbeddedSource
    registry: Registry
    task: asyncio.Task[None]

    @property
    def store(self) -> EtcdStore:
        assert isinstance(self.source.store, EtcdStore)
        return self.source.store

    def health(self, key: ServiceKey = ECHO) -> dict[str, bool]:
        svc = self.registry.services.get(key)
        return {f"{i.host}:{i.port}": i.healthy for i in svc.instances} if svc else {}

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    """Replicas started by the test (with ``start``); all stopped at the end."""
    started: list[Replica] = []
    yield started
    for r in started:
        await r.stop()


@pytest.fixture
async def pair(replicas: list[Replica], etcd: EtcdServer) -> list[Replica]:
    return [await start(replicas, [etcd.url]) for _ in range(2)]


async def start(replicas: list[Replica], endpoints: list[str], checks: InstanceCheckConfig | None = None,
                 unhealthy_after: float = 2.0, remove_after: float = 4.0,
                 now_ms: Callable[[], int] | None = None) -> Replica:
    settings = EmbeddedSourceConfig(kind="embedded", store="etcd", database=None,
                                    heartbeat_unhealthy_after=unhealthy_after, heartbeat_remove_after=remove_after,
                                    instance_check=checks or InstanceCheckConfig(enabled=False),
                                    etcd=EmbeddedEtcdConfig(endpoints=endpoints, timeout=2.0, leader_ttl=2))
    source = EmbeddedSource("embedded", embedded_settings(settings))
    if now_ms is not None:  # this replica's wall clock (as if its machine's were off)
        assert isinstance(source.store, EtcdStore)
        source.store.now_ms = now_ms
    registry = Registry(["embedded"])
    replica = Replica(source, registry, asyncio.create_task(source.run(registry)))
    replicas.append(replica)
    await eventually(lambda: registry.ready, timeout=10, what="first listing of etcd")
    return replica


async def test_a_write_on_one_replica_is_read_back_at_once_and_seen_by_the_other(pair: list[Replica]) -> None:
    a, b = pair
    # read-your-writes: each call returns after a's own mirror applied it
    for port in range(1000, 1050):
        await a.store.register(ECHO, Instance(host="10.9.9.9", port=port, ephemeral=False))
        svc = a.store.service(ECHO)
        assert svc is not None and svc.instances[-1].port == port
        assert await a.store.deregister(ECHO, "10.9.9.9", port)
        assert a.store.service(ECHO) == Service(name="echo")
    await a.store.register(ECHO, Instance(host="10.0.0.1", port=80, ephemeral=False, weight=3))
    assert a.health() == {"10.0.0.1:80": True}
    await eventually(lambda: b.health() == {"10.0.0.1:80": True}, what="b sees a's registration")
    await b.store.register(ECHO, Instance(host="10.0.0.2", port=80))
    await b.store.upsert_service(Service(name="echo", lb_policy="RANDOM"))
    await eventually(lambda: a.health() == {"10.0.0.1:80": True, "10.0.0.2:80": True}, what="a sees b's")
    await a.store.update(ECHO, "10.0.0.1", 80, {"healthy": False})
    assert await b.store.deregister(ECHO, "10.0.0.2", 80) is True
    assert await b.store.deregister(ECHO, "10.0.0.2", 80) is False
    await eventually(lambda: a.health() == b.health() == {"10.0.0.1:80": False}, what="both agree")
    assert a.registry.services[ECHO] == b.registry.services[ECHO]
    assert a.registry.services[ECHO].lb_policy.value == "RANDOM"
    assert a.registry.services[ECHO].instances[0].weight == 3


async def test_replicas_translate_to_identical_resource_versions(pair: list[Replica]) -> None:
    a, b = pair
    for port in range(9000, 9010):
        await (a if port % 2 else b).store.register(ECHO, Instance(host="127.0.0.1", port=port, ephemeral=False))
    await eventually(lambda: len(a.health()) == len(b.health()) == 10, what="both have all ten")
    snapshots = [translator(Config()).update(
        r.registry.services, r.registry.services.keys()) for r in (a, b)]
    assert snapshots[0].version == snapshots[1].version
    per_type = [{url: t.version for url, t in snap.types.items()} for snap in snapshots]
    assert per_type[0] == per_type[1]


async def test_silent_ephemeral_instance_goes_unhealthy_then_away_on_every_replica(pair: list[Replica]) -> None:
    a, b = pair
    await a.store.register(ECHO, Instance(host="10.0.0.1", port=80))
    await eventually(lambda: b.health() == {"10.0.0.1:80": True}, what="registered")
    # beats on the *other* replica keep it alive past heartbeat_remove_after (4 s)
    for _ in range(6):
        assert await b.store.beat(ECHO, "10.0.0.1", 80) is True
        await asyncio.sleep(1)
    assert a.health() == b.health() == {"10.0.0.1:80": True}
    # silence: etcd's lease on the alive key runs out, then the instance's own
    await eventually(lambda: a.health() == b.health() == {"10.0.0.1:80": False}, timeout=6, what="unhealthy")
    assert await a.store.beat(ECHO, "10.0.0.1", 80) is True  # a beat heals
    await eventually(lambda: a.health() == b.health() == {"10.0.0.1:80": True}, what="healed")
    await eventually(lambda: a.health() == b.health() == {}, timeout=10, what="removed after silence")
    assert ECHO in a.registry.services  # the service stays, empty: Envoy's cluster loses its last endpoint
    assert await a.store.beat(ECHO, "10.0.0.1", 80) is False  # the client must register again
    assert await a.store.beat(ECHO, "10.0.0.1", 80, Instance(host="10.0.0.1", port=80, weight=2)) is True
    await eventually(lambda: b.health() == {"10.0.0.1:80": True}, what="re-registered from the beat")


async def test_only_the_leader_checks_and_another_takes_over(replicas: list[Replica], etcd: EtcdServer) -> None:
    checks = InstanceCheckConfig(interval=0.2, timeout=0.2, healthy_threshold=1, unhealthy_threshold=1)
    a = await start(replicas, [etcd.url], checks)
    b = await start(replicas, [etcd.url], checks)
    await eventually(lambda: a.source.leader is not None and b.source.leader is not None
                     and a.source.leader.is_leader != b.source.leader.is_leader, timeout=10, what="one leader")
    # nothing listens on port 1: the leader's probe fails and marks it unhealthy, for both
    await a.store.register(ECHO, Instance(host="127.0.0.1", port=1, ephemeral=False))
    await eventually(lambda: a.health() == b.health() == {"127.0.0.1:1": False}, what="checked by the leader")
    leader, other = (a, b) if a.source.leader and a.source.leader.is_leader else (b, a)
    await leader.stop()  # its lease is not renewed: etcd drops the key after leader_ttl
    await other.store.update(ECHO, "127.0.0.1", 1, {"healthy": True})
    assert other.source.leader is not None
    await eventually(lambda: other.source.leader is not None and other.source.leader.is_leader, timeout=10,
                     what="the other replica takes over")
    await eventually(lambda: other.health() == {"127.0.0.1:1": False}, what="the new leader checks")


async def test_record_check_is_counted_on_the_replica_that_probes(pair: list[Replica]) -> None:
    a, b = pair
    await a.store.register(ECHO, Instance(host="10.0.0.1", port=80, ephemeral=False))
    target = CheckTarget(ECHO, "10.0.0.1", 80)
    await a.store.record_check(target, False, 2, 2)
    assert a.health() == {"10.0.0.1:80": True}  # one failure of two
    await a.store.record_check(target, False, 2, 2)
    await eventually(lambda: b.health() == {"10.0.0.1:80": False}, what="flip written to etcd")


async def test_while_etcd_is_down_the_view_stays_writes_fail_and_it_catches_up(
        pair: list[Replica], etcd: EtcdServer) -> None:
    a, b = pair
    await a.store.register(ECHO, Instance(host="10.0.0.1", port=80, ephemeral=False))
    await a.store.register(ECHO, Instance(host="10.0.0.2", port=80))  # ephemeral: leases in etcd
    await eventually(lambda: len(b.health()) == 2, what="both registered")
    before = dict(a.registry.services)
    etcd.stop()
    await eventually(lambda: a.source.last_error is not None and b.source.last_error is not None,
                     timeout=10, what="the loss noticed")
    with pytest.raises(StoreUnavailable):
        await a.store.register(ECHO, Instance(host="10.0.0.3", port=80, ephemeral=False))
    # beats of a known instance are answered: etcd renews every lease when it is back
    assert await b.store.beat(ECHO, "10.0.0.2", 80) is True
    await asyncio.sleep(5)  # longer than heartbeat_remove_after: nothing may expire meanwhile
    assert dict(a.registry.services) == dict(b.registry.services) == before
    etcd.start()
    await eventually(lambda: a.source.last_error is None and b.source.last_error is None, timeout=10,
                     what="both follow etcd again")
    assert await b.store.beat(ECHO, "10.0.0.2", 80) is True
    await b.store.register(ECHO, Instance(host="10.0.0.3", port=80, ephemeral=False))
    await eventually(lambda: a.health() == {"10.0.0.1:80": True, "10.0.0.2:80": True, "10.0.0.3:80": True},
                     what="a catches up with a write made on b after the outage")


async def test_nacos_clients_register_on_one_replica_and_beat_on_another(tmp_path: Path, etcd: EtcdServer) -> None:
    """The whole HTTP path: Nacos' v1 API on two ControlPlanes sharing etcd."""
    source = EmbeddedSourceConfig(kind="embedded", name="embedded", store="etcd",
                                  etcd=EmbeddedEtcdConfig(endpoints=[etcd.url], timeout=2.0),
                                  heartbeat_unhealthy_after=2, heartbeat_remove_after=4,
                                  instance_check=InstanceCheckConfig(enabled=False))
    planes: list[Plane] = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        planes.append(await start_plane(tmp_path / name, None, sources=[source]))
    a, b = planes
    echo = {"serviceName": "echo", "ip": "10.0.0.1", "port": "80"}

    def url(plane: Plane, path: str) -> str:
        return f"http://127.0.0.1:{plane.cp.admin_port}/nacos/v1/ns/instance{path}"

    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url(a, ""), params=echo) as r:  # ephemeral, as Nacos clients register
                assert (r.status, await r.text()) == (200, "ok")
            # b's watch brings it (a beat that came first would get 20404, and the client register again)
            await eventually(lambda: ECHO in b.cp.registry.services, timeout=10, what="b sees the registration")
            for _ in range(6):  # beats on b only, past heartbeat_remove_after
                async with http.put(url(b, "/beat"), params=echo) as r:
                    assert (await r.json(content_type=None))["code"] == 10200
                await asyncio.sleep(1)
            async with http.get(url(a, "/list"), params={"serviceName": "echo"}) as r:
                hosts = (await r.json(content_type=None))["hosts"]
            assert [(h["ip"], h["port"], h["healthy"]) for h in hosts] == [("10.0.0.1", 80, True)]
            etcd.stop()
            await eventually(lambda: a.cp.sources[0].last_error is not None, timeout=10, what="etcd loss noticed")
            async with http.post(url(a, ""), params={**echo, "ip": "10.0.0.2"}) as r:
                assert r.status == 503  # refused, not half-done: the client retries
            async with http.put(url(b, "/beat"), params=echo) as r:
                assert (await r.json(content_type=None))["code"] == 10200  # known: kept while etcd is away
            etcd.start()
    finally:
        for p in planes:
            await p.cp.stop(0)


async def test_losing_the_etcd_member_in_use_moves_writes_and_watches_to_another(
        tmp_path: Path, replicas: list[Replica]) -> None:
    members = etcd_cluster(tmp_path, 3)
    try:
        endpoints = [m.url for m in members]
        a = await start(replicas, endpoints)
        b = await start(replicas, endpoints)
        await a.store.register(ECHO, Instance(host="10.0.0.1", port=80, ephemeral=False))
        await eventually(lambda: b.health() == {"10.0.0.1:80": True}, what="b sees a's write")
        members[0].stop()  # the first endpoint: both replicas' writes and watches use it
        # the write skips the member that refuses connections: no 503 for the client
        await a.store.register(ECHO, Instance(host="10.0.0.2", port=80, ephemeral=False))
        await b.store.register(ECHO, Instance(host="10.0.0.3", port=80))
        both = {"10.0.0.1:80": True, "10.0.0.2:80": True, "10.0.0.3:80": True}
        await eventually(lambda: a.health() == b.health() == both, timeout=10,
                         what="both watches moved to another member")
        assert await a.store.beat(ECHO, "10.0.0.3", 80) is True
        await eventually(lambda: a.source.last_error is None and b.source.last_error is None, what="healthy")
    finally:
        for m in members:
            m.stop()


async def test_held_instances_live_by_the_replicas_lease_and_only_their_holder_releases_them(
        pair: list[Replica]) -> None:
    a, b = pair
    await a.store.hold("conn-1", ECHO, Instance(host="10.0.0.1", port=80))
    await a.store.hold("conn-1", ECHO, Instance(host="10.0.0.2", port=80))
    await eventually(lambda: b.health() == {"10.0.0.1:80": True, "10.0.0.2:80": True}, what="b sees both")
    await asyncio.sleep(5)  # past heartbeat_remove_after (4 s): no beats needed, the lease is renewed
    assert b.health() == {"10.0.0.1:80": True, "10.0.0.2:80": True}
    assert await a.store.release("conn-2", ECHO, "10.0.0.1", 80) is False
    # registered again on b (a client's redo there): a's release must not delete b's record
    await b.store.register(ECHO, Instance(host="10.0.0.2", port=80, ephemeral=False))
    assert await a.store.release("conn-1", ECHO, "10.0.0.2", 80) is False
    assert await a.store.release("conn-1", ECHO, "10.0.0.1", 80) is True
    await eventually(lambda: a.health() == b.health() == {"10.0.0.2:80": True}, what="only the released one gone")


async def test_a_batch_registration_is_one_commit_and_releases_are_another(pair: list[Replica]) -> None:
    a, b = pair
    await a.store.hold("conn-1", ECHO, Instance(host="10.0.0.1", port=1))
    commits = 0
    real = a.store._commit  # noqa: SLF001

    async def counted(*args: object, **kwargs: object) -> dict[str, object]:
        nonlocal commits
        commits += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    a.store._commit = counted  # type: ignore[method-assign]  # noqa: SLF001
    await a.store.hold_many("conn-1", ECHO, [Instance(host="10.0.1.1", port=100 + i) for i in range(50)],
                            [("10.0.0.1", 1)])
    assert commits == 2  # the release, then all 50 held instances
    await eventually(lambda: len(b.health()) == 50 and "10.0.0.1:1" not in b.health(), what="b sees the batch")


async def test_last_ref_time_rises_with_every_change_whichever_replica_serves_and_whatever_its_clock(
        replicas: list[Replica], etcd: EtcdServer) -> None:
    """nacos-sdk-go keeps a ServiceInfo only if its lastRefTime is newer than the one it
    holds, also after it moves to another replica. Replicas whose clocks are an hour apart
    stamp each state of a service the same, every change higher than the last, and a
    replica started later with a clock behind never lowers them."""
    hour = 3_600_000
    slow = await start(replicas, [etcd.url], now_ms=lambda: wall_ms() - hour)
    await eventually(lambda: slow.store.ref_time(ECHO) >= wall_ms() - hour - 60_000, timeout=30,
                     what="slow wrote the offset")
    held = slow.store.ref_time(ECHO)  # a client of the slow replica holds this
    fast = await start(replicas, [etcd.url], now_ms=lambda: wall_ms() + hour)
    await eventually(lambda: fast.store.ref_time(ECHO) >= wall_ms() + hour - 60_000, timeout=30,
                     what="fast raised the offset")
    late = await start(replicas, [etcd.url], now_ms=lambda: wall_ms() - 2 * hour)  # never lowers it

    async def same_state() -> int:
        """The stamp all three give once their mirrors are at one revision."""
        def agreed() -> int | None:
            revisions = {r.store.mirror.revision for r in (slow, fast, late)}
            stamps = {r.store.ref_time(ECHO) for r in (slow, fast, late)}
            return stamps.pop() if len(revisions) == 1 and len(stamps) == 1 else None
        return await eventually(agreed, timeout=30, what="the replicas agree on the stamp")

    stamps = [held, await same_state()]
    writers = [slow, fast, late]
    for i in range(12):  # changes from each replica in turn, as fast as they come
        w = writers[i % 3]
        if i % 4 == 3:
            assert await w.store.deregister(ECHO, "10.0.0.1", 1000 + i - 1)
        else:
            await w.store.register(ECHO, Instance(host="10.0.0.1", port=1000 + i, ephemeral=False))
        stamps.append(w.store.ref_time(ECHO))  # what its own client is pushed at once
        stamps.append(await same_state())  # what a client moving to any replica is answered
    changes = [stamps[0], *stamps[1::2]]  # one per state: strictly rising across replicas
    assert changes == sorted(set(changes)), changes
    assert stamps[1:] == sorted(stamps[1:]), stamps  # and no replica ever answers lower
    assert stamps[-1] >= wall_ms() + hour - 60_000  # on the fastest replica's wall clock


async def test_a_go_sdk_moving_between_replicas_keeps_every_change(tmp_path: Path, etcd: EtcdServer) -> None:
    """The Nacos gRPC face of two replicas: a client that follows nacos-sdk-go's cache rule
    (GoSdkCache) subscribes on one, changes come through both, and
    it moves to the other, as the SDK does when its server goes away. No change is dropped
    as stale. (Replicas with skewed clocks: the store test above.)"""
    source = EmbeddedSourceConfig(kind="embedded", name="embedded", store="etcd",
                                  etcd=EmbeddedEtcdConfig(endpoints=[etcd.url], timeout=2.0),
                                  instance_check=InstanceCheckConfig(enabled=False),
                                  nacos_grpc={"address": "127.0.0.1:0"})
    planes: list[Plane] = []
    clients: list[Client] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            planes.append(await start_plane(tmp_path / name, None, sources=[source]))
        for p in planes:
            clients.append(Client(grpc_port(p)))
            await clients[-1].setup()
        cache = GoSdkCache()
        sub = {"namespace": "public", "groupName": "DEFAULT_GROUP", "subscribe": True, "clusters": "",
               "serviceName": "echo", "requestId": "s"}
        expected: list[int] = []

        def offer_pushes(c: Client) -> None:
            while c.received:
                kind, body = c.received.pop(0)
                if kind == "NotifySubscriberRequest":
                    cache.offer(body["serviceInfo"])

        for round_, (follower, _) in enumerate([(clients[0], clients[1]), (clients[1], clients[0])]):
            cache.offer((await follower.call("SubscribeServiceRequest", sub))[1]["serviceInfo"])
            for i in range(10):  # through both replicas in turn
                port = 9000 + 10 * round_ + i
                await clients[i % 2].call("PersistentInstanceRequest", register(port))
                expected.append(port)

                def caught_up(c: Client = follower) -> bool:
                    offer_pushes(c)
                    return sorted(h["port"] for h in cache.held["echo"]["hosts"]) == expected

                await eventually(caught_up, timeout=30, what=f"the follower holds {port}")
            await follower.call("SubscribeServiceRequest", {**sub, "subscribe": False})
        assert cache.lost == 0
    finally:
        for c in clients:
            await c.close()
        for p in planes:
            await p.cp.stop(0)
