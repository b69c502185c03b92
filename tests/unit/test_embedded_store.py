"""The embedded registry's store: registration, heartbeat expiry, check thresholds, durability."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdscp.model.registry import Registry
from xdscp.model.service import Instance, Service, ServiceKey
from xdscp.sources.embedded.contract import CheckTarget, InstanceNotFound
from xdscp.sources.embedded.database import RegistryDatabase
from xdscp.sources.embedded.store import EmbeddedStore

ECHO = ServiceKey("public", "DEFAULT_GROUP", "echo")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def served(reg: Registry, key: ServiceKey = ECHO) -> dict[str, bool]:
    svc = reg.services.get(key)
    return {f"{i.host}:{i.port}": i.healthy for i in svc.instances} if svc else {}


def make(tmp_path: Path | None = None) -> tuple[EmbeddedStore, Registry, Clock]:
    clock = Clock()
    db = RegistryDatabase(tmp_path / "reg.db") if tmp_path is not None else None
    store = EmbeddedStore("embedded", db, clock)
    reg = Registry(["embedded"])
    store.bind(reg)
    return store, reg, clock


async def test_register_update_deregister_are_published_at_once() -> None:
    store, reg, _ = make()
    await store.register(ECHO, Instance(host="10.0.0.1", port=80))
    await store.register(ECHO, Instance(host="10.0.0.2", port=80))
    assert served(reg) == {"10.0.0.1:80": True, "10.0.0.2:80": True}
    await store.update(ECHO, "10.0.0.2", 80, {"healthy": False, "weight": 3})
    assert served(reg)["10.0.0.2:80"] is False
    assert await store.deregister(ECHO, "10.0.0.2", 80) is True
    assert await store.deregister(ECHO, "10.0.0.2", 80) is False
    assert await store.deregister(ECHO, "10.0.0.1", 80) is True
    assert ECHO in reg.services and served(reg) == {}  # the service stays, with no endpoints
    with pytest.raises(InstanceNotFound):
        await store.update(ECHO, "10.9.9.9", 1, {"weight": 2})


async def test_silent_ephemeral_instance_goes_unhealthy_then_away_and_a_beat_heals() -> None:
    store, reg, clock = make()
    await store.register(ECHO, Instance(host="10.0.0.1", port=80))
    await store.register(ECHO, Instance(host="10.0.0.2", port=80, ephemeral=False))
    clock.now += 14.9
    store.expire(15, 30)
    assert served(reg)["10.0.0.1:80"] is True
    clock.now += 0.2
    store.expire(15, 30)
    assert served(reg) == {"10.0.0.1:80": False, "10.0.0.2:80": True}  # persistent ones never expire
    assert await store.beat(ECHO, "10.0.0.1", 80) is True
    assert served(reg)["10.0.0.1:80"] is True
    clock.now += 30.1
    store.expire(15, 30)
    assert served(reg) == {"10.0.0.2:80": True}


async def test_beat_for_an_unknown_instance_registers_it_from_the_beat_as_nacos_does() -> None:
    store, reg, _ = make()
    assert await store.beat(ECHO, "10.0.0.7", 81) is False
    assert await store.beat(ECHO, "10.0.0.7", 81, Instance(host="10.0.0.7", port=81, weight=2)) is True
    assert served(reg) == {"10.0.0.7:81": True}


async def test_check_thresholds_flip_persistent_health() -> None:
    store, reg, _ = make()
    await store.register(ECHO, Instance(host="10.0.0.1", port=80, ephemeral=False))
    target = CheckTarget(ECHO, "10.0.0.1", 80)
    await store.record_check(target, False, 2, 3)
    await store.record_check(target, False, 2, 3)
    assert served(reg)["10.0.0.1:80"] is True
    await store.record_check(target, False, 2, 3)
    assert served(reg)["10.0.0.1:80"] is False
    await store.record_check(target, True, 2, 3)
    assert served(reg)["10.0.0.1:80"] is False
    await store.record_check(target, True, 2, 3)
    assert served(reg)["10.0.0.1:80"] is True


async def test_settings_persistent_instances_and_their_health_survive_a_restart(tmp_path: Path) -> None:
    store, reg, _ = make(tmp_path)
    await store.upsert_service(Service(name="echo", lb_policy="LEAST_REQUEST", protect_threshold=0.5))
    await store.register(ECHO, Instance(host="10.0.0.1", port=80, ephemeral=False, metadata={"v": "2"}))
    await store.register(ECHO, Instance(host="10.0.0.2", port=80, ephemeral=False))
    await store.register(ECHO, Instance(host="10.0.0.3", port=80))  # ephemeral: memory only
    for _ in range(2):
        await store.record_check(CheckTarget(ECHO, "10.0.0.2", 80), False, 1, 2)
    before = reg.services[ECHO]

    again, reg2, _ = make(tmp_path)
    after = reg2.services[ECHO]
    assert after.lb_policy.value == "LEAST_REQUEST" and after.protect_threshold == 0.5
    assert served(reg2) == {"10.0.0.1:80": True, "10.0.0.2:80": False}
    assert after.instances == tuple(i for i in before.instances if not i.ephemeral)


async def test_switching_an_instance_from_persistent_to_ephemeral_forgets_it_on_disk(tmp_path: Path) -> None:
    store, _, _ = make(tmp_path)
    await store.register(ECHO, Instance(host="10.0.0.1", port=80, ephemeral=False))
    await store.register(ECHO, Instance(host="10.0.0.1", port=80, ephemeral=True))
    _, reg2, _ = make(tmp_path)
    assert served(reg2) == {}


async def test_bulk_import_is_loaded_like_registrations(tmp_path: Path) -> None:
    db = RegistryDatabase(tmp_path / "reg.db")
    db.import_services([Service(name=f"s{i}", instances=(Instance(host="10.0.0.1", port=80 + i, ephemeral=False),
                                                         Instance(host="10.0.0.2", port=80)))
                        for i in range(3)])
    db.close()
    _, reg, _ = make(tmp_path)
    assert {k.name: [i.port for i in s.instances] for k, s in reg.services.items()} == {
        "s0": [80], "s1": [81], "s2": [82]}  # ephemeral instances are never stored


async def test_a_held_instance_needs_no_beats_and_only_its_holder_releases_it() -> None:
    store, reg, clock = make()
    changed: list[frozenset[ServiceKey] | None] = []
    store.add_listener(changed.append)
    await store.hold("conn-1", ECHO, Instance(host="10.0.0.1", port=80))
    await store.hold("conn-1", ECHO, Instance(host="10.0.0.2", port=80))
    assert changed == [frozenset({ECHO}), frozenset({ECHO})]
    clock.now += 3600
    store.expire(15, 30)
    assert served(reg) == {"10.0.0.1:80": True, "10.0.0.2:80": True}  # its connection keeps it, not beats
    assert await store.beat(ECHO, "10.0.0.1", 80) is True
    await store.update(ECHO, "10.0.0.1", 80, {"weight": 5})  # an update keeps it held
    clock.now += 3600
    store.expire(15, 30)
    assert served(reg) == {"10.0.0.1:80": True, "10.0.0.2:80": True}
    assert await store.release("conn-2", ECHO, "10.0.0.1", 80) is False  # not its holder
    # re-registered over HTTP: the old connection no longer holds it, and its close leaves it
    await store.register(ECHO, Instance(host="10.0.0.2", port=80))
    assert await store.release("conn-1", ECHO, "10.0.0.2", 80) is False
    assert await store.release("conn-1", ECHO, "10.0.0.1", 80) is True
    assert served(reg) == {"10.0.0.2:80": True}
    clock.now += 31  # the HTTP one lives by heartbeats again
    store.expire(15, 30)
    assert served(reg) == {}


async def test_a_batch_registration_is_one_change() -> None:
    """Nacos' batch register: 50 instances held, two of the old ones released, one change
    pushed (not 52), and another holder's instance left alone."""
    store, reg, _ = make()
    await store.hold("conn-1", ECHO, Instance(host="10.0.0.1", port=1))
    await store.hold("conn-1", ECHO, Instance(host="10.0.0.1", port=2))
    await store.hold("conn-2", ECHO, Instance(host="10.0.0.9", port=9))
    changed: list[frozenset[ServiceKey] | None] = []
    store.add_listener(changed.append)
    await store.hold_many("conn-1", ECHO, [Instance(host="10.0.1.1", port=100 + i) for i in range(50)],
                          [("10.0.0.1", 1), ("10.0.0.1", 2), ("10.0.0.9", 9)])
    assert changed == [frozenset({ECHO})]
    assert len(served(reg)) == 51 and "10.0.0.9:9" in served(reg) and "10.0.0.1:1" not in served(reg)
    assert await store.release("conn-1", ECHO, "10.0.1.1", 100) is True  # held by conn-1


async def test_last_ref_time_rises_with_each_change_and_answers_follow_the_clock_without_running_ahead() -> None:
    """nacos-sdk-go keeps a ServiceInfo only if its lastRefTime is newer than the one it
    holds: a change in the millisecond of an answer, or after the clock stepped back, must
    still give a newer one. Answers are stamped with the clock, as Nacos stamps them, and
    ten thousand in one millisecond must not run the stamps ahead of it."""
    wall = [1_700_000_000_000]
    store = EmbeddedStore("embedded", None, Clock(), now_ms=lambda: wall[0])
    store.bind(Registry(["embedded"]))
    other = ServiceKey("public", "DEFAULT_GROUP", "other")
    stamps = [store.ref_time(ECHO)]  # not a service yet: what a client asking for it holds
    assert stamps == [wall[0]]
    for port in range(1, 6):  # five changes in that millisecond, each answered
        await store.register(ECHO, Instance(host="10.0.0.1", port=port))
        stamps.append(store.ref_time(ECHO))
    wall[0] -= 60_000  # the clock steps back a minute
    await store.deregister(ECHO, "10.0.0.1", 1)
    stamps.append(store.ref_time(ECHO))
    assert stamps == sorted(set(stamps)), stamps
    for _ in range(10_000):
        assert store.ref_time(ECHO) == stamps[-1]
    wall[0] += 120_000
    assert store.ref_time(ECHO) == wall[0]  # a later answer: the clock, as Nacos stamps it
    assert store.ref_time(other) == wall[0]
    await store.register(other, Instance(host="10.0.0.1", port=9))  # created in the millisecond it was asked for
    assert store.ref_time(other) == wall[0] + 1


def test_the_database_keeps_every_setting_and_instance_field_and_reads_rows_written_in_full(tmp_path: Path) -> None:
    """Rows hold only what differs from the defaults (smaller rows, and about 2.5 KiB less
    memory per service once loaded); what is read back is what was written, and rows
    written with every field (by earlier versions) still read."""
    from xdscp.model.service import HashPolicy
    plain = Service(name="plain")
    tuned = Service(name="tuned", namespace="ns", group="g", lb_policy="LEAST_REQUEST", connect_timeout=2.5,
                    panic_threshold=10, protect_threshold=0.5, locality_failover=False,
                    hash_policy=HashPolicy(header="x-user"), metadata={"team": "a"})
    inst = Instance(host="10.0.0.1", port=80, weight=0, healthy=False, enabled=False, ephemeral=False,
                    draining=True, zone="z", region="r", cluster="c", priority=2, metadata={"k": "v"})
    defaults = Instance(host="10.0.0.2", port=81, ephemeral=False)
    db = RegistryDatabase(tmp_path / "reg.db")
    db.import_services([plain.model_copy(update={"instances": (defaults,)}),
                        tuned.model_copy(update={"instances": (inst,)})])
    db._db.execute("INSERT INTO instances (namespace, grp, service, host, port, data) VALUES (?, ?, ?, ?, ?, ?)",
                   (*plain.key, "10.0.0.3", 82, Instance(host="10.0.0.3", port=82, ephemeral=False).model_dump_json()))
    db.close()
    services, instances = RegistryDatabase(tmp_path / "reg.db").load()
    assert sorted(services, key=lambda s: s.name) == [plain, tuned]
    assert sorted(instances, key=lambda ki: ki[1].host) == [
        (tuned.key, inst), (plain.key, defaults), (plain.key, Instance(host="10.0.0.3", port=82, ephemeral=False))]
