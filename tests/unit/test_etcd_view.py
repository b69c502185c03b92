"""The etcd store's reading of its keys, without etcd: settings and instance records
become services, a silent ephemeral instance is unhealthy, a bad record is left out, and
a change rebuilds only the services of the keys it touched."""

from __future__ import annotations

from xdscp.model.service import Instance, Service, ServiceKey
from xdscp.sources.embedded.etcd_view import EtcdServiceView, instance_path, service_of, service_path
from xdscp.sources.etcd.mirror import EtcdValue

ECHO = ServiceKey("public", "DEFAULT_GROUP", "echo")
ODD = ServiceKey("prod", "payments", "providers:org.demo.Api:1.0.0:")


def put(kvs: dict[str, EtcdValue], rel: str, record: Service | Instance | bytes) -> None:
    value = record if isinstance(record, bytes) else record.model_dump_json().encode()
    kvs[rel] = EtcdValue(value, 0)


def test_keys_become_services_with_the_heartbeat_rule() -> None:
    kvs: dict[str, EtcdValue] = {}
    bad: list[tuple[str, str]] = []
    view = EtcdServiceView(lambda: kvs, lambda rel, why: bad.append((rel, why)))
    put(kvs, f"services/{service_path(ECHO)}", Service(name="x", lb_policy="RANDOM"))
    put(kvs, f"instances/{instance_path(ECHO, '10.0.0.1', 80)}", Instance(host="10.0.0.1", port=80, ephemeral=False))
    put(kvs, f"instances/{instance_path(ECHO, '10.0.0.2', 80)}", Instance(host="10.0.0.2", port=80))  # ephemeral
    put(kvs, f"instances/{instance_path(ECHO, '10.0.0.3', 80)}", Instance(host="10.0.0.3", port=80))
    put(kvs, f"alive/{instance_path(ECHO, '10.0.0.3', 80)}", b"1")
    put(kvs, f"instances/{instance_path(ODD, '10.0.0.9', 1)}", b"{not json")
    put(kvs, "leader", b"replica-1")
    view.reset()
    echo = view.services[ECHO]
    assert echo.name == "echo" and echo.lb_policy.value == "RANDOM"  # the key names it, not the record
    assert [(i.host, i.healthy) for i in echo.instances] == [("10.0.0.1", True), ("10.0.0.2", False),
                                                             ("10.0.0.3", True)]
    assert ODD in view.services and view.services[ODD].instances == ()  # a service with a bad record only
    assert [rel for rel, _ in bad] == [f"instances/{instance_path(ODD, '10.0.0.9', 1)}"]
    assert view.record(ECHO, "10.0.0.2", 80) == Instance(host="10.0.0.2", port=80)  # as stored


def test_a_change_rebuilds_only_what_it_touched() -> None:
    kvs: dict[str, EtcdValue] = {}
    view = EtcdServiceView(lambda: kvs, lambda rel, why: None)
    put(kvs, f"instances/{instance_path(ECHO, '10.0.0.1', 80)}", Instance(host="10.0.0.1", port=80, ephemeral=False))
    put(kvs, f"instances/{instance_path(ODD, '10.0.0.9', 1)}", Instance(host="10.0.0.9", port=1, ephemeral=False))
    view.reset()
    odd_before = view.services[ODD]
    alive = f"alive/{instance_path(ECHO, '10.0.0.2', 80)}"
    rel = f"instances/{instance_path(ECHO, '10.0.0.2', 80)}"
    put(kvs, rel, Instance(host="10.0.0.2", port=80))
    put(kvs, alive, b"1")
    upserted, removed, touched = view.changed({rel, alive})
    assert [s.key for s in upserted] == [ECHO] and removed == [] and touched == {ECHO}
    assert view.services[ODD] is odd_before
    del kvs[alive]  # its lease ran out
    view.changed({alive})
    assert [i.healthy for i in view.services[ECHO].instances] == [True, False]
    for r in [r for r in kvs if service_of(r) == ECHO]:
        del kvs[r]
    upserted, removed, _ = view.changed({f"instances/{instance_path(ECHO, h, 80)}" for h in ("10.0.0.1", "10.0.0.2")})
    assert upserted == [] and removed == [ECHO] and ECHO not in view.services


def test_paths_quote_every_part_and_read_back() -> None:
    rel = f"instances/{instance_path(ODD, '::1', 8080)}"
    assert rel.count("/") == 5 and service_of(rel) == ODD
    assert service_of("leader") is None and service_of("instances/a/b") is None
