"""The publisher: a burst of registry changes inside the debounce window is one snapshot."""

from __future__ import annotations

import asyncio

from xdscp.cache.cache import SnapshotCache
from xdscp.cache.node_group import DEFAULT_GROUP
from xdscp.model.registry import Registry
from xdscp.model.service import Instance, Service
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.translation.publisher import Publisher
from xdscp.translation.translator import ListenerSettings, Translator
from xdscp.type_urls import ENDPOINT


def svc(name: str, port: int) -> Service:
    return Service(name=name, instances=(Instance(host="10.0.0.1", port=port),))


async def burst(debounce: float) -> tuple[int, Publisher]:
    registry = Registry(["s"])
    publisher = Publisher(registry, Translator(ListenerSettings()), SnapshotCache(), debounce)
    task = asyncio.create_task(publisher.run())
    try:
        registry.apply("s", FullSnapshot.of([svc("a", 1)]))
        while publisher.published < 1:
            await asyncio.sleep(0.001)
        for port in range(2, 12):  # ten changes, 1 ms apart
            registry.apply("s", ServiceChange(upserted=(svc("a", port),)))
            await asyncio.sleep(0.001)
        await asyncio.sleep(debounce + 0.1)
        return publisher.published - 1, publisher
    finally:
        task.cancel()


async def test_a_burst_within_the_debounce_window_is_one_publish() -> None:
    pushes, publisher = await burst(0.5)
    assert pushes == 1
    snapshot = publisher.cache.get(DEFAULT_GROUP)
    assert snapshot is not None
    cla = snapshot.get(ENDPOINT).resources["a"].message
    ports = [e.endpoint.address.socket_address.port_value for lo in cla.endpoints for e in lo.lb_endpoints]
    assert ports == [11]  # the one publish carries the burst's last state


async def test_without_debounce_each_change_is_published_on_its_own() -> None:
    pushes, _ = await burst(0.0)
    assert pushes == 10


async def churn(debounce: float, debounce_max: float | None, changes: int = 12, gap: float = 0.05) -> int:
    """Publishes caused by ``changes`` registry changes ``gap`` seconds apart."""
    registry = Registry(["s"])
    publisher = Publisher(registry, Translator(ListenerSettings()), SnapshotCache(), debounce, debounce_max)
    task = asyncio.create_task(publisher.run())
    try:
        registry.apply("s", FullSnapshot.of([svc("a", 1)]))
        while publisher.published < 1:
            await asyncio.sleep(0.001)
        for port in range(2, 2 + changes):
            registry.apply("s", ServiceChange(upserted=(svc("a", port),)))
            await asyncio.sleep(gap)
        await asyncio.sleep((debounce_max or debounce) + 0.2)
        return publisher.published - 1
    finally:
        task.cancel()


async def test_a_sliding_window_holds_steady_churn_until_debounce_max() -> None:
    # Changes every 50 ms for 0.6 s. A fixed 0.2 s window publishes every 0.2 s or so; a
    # window that slides (each change waits another 0.2 s) up to 5 s publishes once.
    assert await churn(0.2, None) >= 3
    assert await churn(0.2, 5.0) == 1
    # And it never waits past debounce_max: 0.3 s caps the sliding window.
    assert await churn(0.2, 0.3) >= 2
