"""The publisher's PushLog: what each publish brought, which streams took it, and since
when each instance has been as it is."""

from __future__ import annotations

import time

from xdscp.cache.cache import SnapshotCache
from xdscp.config import Config
from xdscp.model.registry import Registry
from xdscp.model.service import Instance, Service
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.runtime_settings import translator
from xdscp.translation.publisher import Publisher
from xdscp.type_urls import CLUSTER, ENDPOINT


def svc(name: str, *ports: int, healthy: bool = True) -> Service:
    return Service(name=name, instances=tuple(Instance(host="10.0.0.1", port=p, healthy=healthy) for p in ports))


def publisher() -> Publisher:
    return Publisher(Registry(["s"]), translator(Config()), SnapshotCache(), 0.0, None, {})


def test_each_publish_is_remembered_with_what_it_changed_and_brought() -> None:
    pub = publisher()
    pub.publish(pub.registry.apply("s", FullSnapshot.of([svc("a", 1), svc("b", 2)])))
    pub.publish(pub.registry.apply("s", ServiceChange(upserted=(svc("a", 1, healthy=False),))))
    newest, first = pub.log.recent()
    assert (newest.seq, newest.changed, newest.changed_count) == (2, ("public/DEFAULT_GROUP/a",), 1)
    assert newest.types == {ENDPOINT}  # only an assignment changed
    assert first.changed_count == 2 and CLUSTER in first.types
    assert newest.version == pub.last_version


def test_a_stream_took_a_push_when_it_acked_its_version_or_a_later_one() -> None:
    pub = publisher()
    pub.publish(pub.registry.apply("s", FullSnapshot.of([svc("a", 1)])))
    v1 = pub.cache.get().get(ENDPOINT).version  # type: ignore[union-attr]
    pub.publish(pub.registry.apply("s", ServiceChange(upserted=(svc("a", 1, 2),))))
    v2 = pub.cache.get().get(ENDPOINT).version  # type: ignore[union-attr]
    second, first = pub.log.recent()
    streams = [{ENDPOINT: v1}, {ENDPOINT: v2}, {CLUSTER: "unknown"}, {}]
    assert pub.log.took(first, streams) == 2  # v1 itself, and v2 that came after
    assert pub.log.took(second, streams) == 1


def test_an_instance_is_dated_by_its_last_change() -> None:
    pub = publisher()
    pub.publish(pub.registry.apply("s", FullSnapshot.of([svc("a", 1, 2)])))
    key = svc("a").key
    first = pub.log.instance_since(key, "10.0.0.1", 1)
    assert first is not None and abs(first - time.time()) < 60
    time.sleep(0.01)
    pub.publish(pub.registry.apply("s", ServiceChange(upserted=(
        Service(name="a", instances=(Instance(host="10.0.0.1", port=1), Instance(host="10.0.0.1", port=2,
                                                                                  weight=3))),))))
    assert pub.log.instance_since(key, "10.0.0.1", 1) == first  # unchanged
    changed = pub.log.instance_since(key, "10.0.0.1", 2)
    assert changed is not None and changed > first
    pub.publish(pub.registry.apply("s", ServiceChange(removed=(key,))))
    assert pub.log.instance_since(key, "10.0.0.1", 1) is None
