"""The publisher: a burst of registry changes inside the debounce window is one snapshot.

The window is driven by a manual clock, so each count below is exact on any machine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from xdscp.cache.cache import SnapshotCache
from xdscp.config import Config
from xdscp.model.registry import Registry
from xdscp.model.service import Instance, Service
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.runtime_settings import translator
from xdscp.translation.publisher import Publisher
from xdscp.type_urls import ENDPOINT

from manual_clock import ManualClock, settle
from waiting import eventually


def svc(name: str, port: int) -> Service:
    return Service(name=name, instances=(Instance(host="10.0.0.1", port=port),))


@asynccontextmanager
async def running(sources: list[str], debounce: float = 0.0, debounce_max: float | None = None,
                  optional: dict[str, float] | None = None) -> AsyncIterator[tuple[Registry, Publisher, ManualClock]]:
    """A publisher running on a manual clock, over a registry of ``sources`` none has loaded yet."""
    registry = Registry(sources)
    clock = ManualClock(start=1024.0)
    publisher = Publisher(registry, translator(Config()), SnapshotCache(), debounce, debounce_max, optional or {},
                          clock=clock)
    task = asyncio.create_task(publisher.run())
    try:
        await settle()
        yield registry, publisher, clock
    finally:
        task.cancel()


@asynccontextmanager
async def publishing(debounce: float, debounce_max: float | None = None) -> AsyncIterator[
        tuple[Registry, Publisher, ManualClock]]:
    """A publisher on a manual clock, past its first publish."""
    async with running(["s"], debounce, debounce_max) as (registry, publisher, clock):
        registry.apply("s", FullSnapshot.of([svc("a", 1)]))
        await eventually(lambda: publisher.published == 1, what="the first publish")
        yield registry, publisher, clock


def served(publisher: Publisher) -> set[str]:
    snapshot = publisher.cache.get()
    assert snapshot is not None
    return set(snapshot.get(ENDPOINT).resources)


def change(registry: Registry, port: int) -> None:
    registry.apply("s", ServiceChange(upserted=(svc("a", port),)))


async def test_a_burst_within_the_debounce_window_is_one_publish() -> None:
    async with publishing(0.5) as (registry, publisher, clock):
        change(registry, 2)
        await settle()
        assert clock.sleeping == 1 and publisher.published == 1  # the window is open
        for port in range(3, 12):
            change(registry, port)
            await clock.advance(0.001)
        assert publisher.published == 1
        await clock.advance(0.5)
        assert publisher.published == 2 and clock.sleeping == 0
        snapshot = publisher.cache.get()
        assert snapshot is not None
        cla = snapshot.get(ENDPOINT).resources["a"].message
        ports = [e.endpoint.address.socket_address.port_value for lo in cla.endpoints for e in lo.lb_endpoints]
        assert ports == [11]  # the one publish carries the burst's last state


async def test_without_debounce_each_change_is_published_on_its_own() -> None:
    async with publishing(0.0) as (registry, publisher, clock):
        for i, port in enumerate(range(2, 12)):
            change(registry, port)
            await eventually(lambda n=i + 2: publisher.published == n, what=f"change {port} published")
            assert clock.sleeping == 0  # nothing waits for more


async def churn(debounce: float, debounce_max: float | None, changes: int = 12, gap: float = 1 / 16) -> int:
    """Publishes caused by ``changes`` registry changes ``gap`` seconds apart (on the manual clock)."""
    async with publishing(debounce, debounce_max) as (registry, publisher, clock):
        for port in range(2, 2 + changes):
            change(registry, port)
            await clock.advance(gap)
        await clock.advance((debounce_max or debounce) + 0.2)
        return publisher.published - 1


async def test_a_fixed_window_publishes_once_per_window() -> None:
    # Changes every 1/16 s for 0.75 s (binary fractions: the clock's sums are exact); a
    # fixed 0.25 s window closes at 0.25, 0.5 and 0.75.
    assert await churn(0.25, None) == 3


async def test_a_sliding_window_holds_steady_churn_until_debounce_max() -> None:
    # A window that slides (each change waits another 0.25 s) up to 5 s publishes once ...
    assert await churn(0.25, 5.0) == 1
    # ... and never waits past debounce_max: 0.375 s caps it, at 0.375 and 0.75.
    assert await churn(0.25, 0.375) == 2


async def test_the_first_snapshot_waits_for_a_required_source_however_long() -> None:
    async with running(["local", "remote"]) as (registry, publisher, clock):
        registry.apply("local", FullSnapshot.of([svc("a", 1)]))
        await clock.advance(3600)
        assert publisher.published == 0 and clock.sleeping == 0  # no timer: only "remote" loading can help
        registry.apply("remote", FullSnapshot.of([svc("b", 2)]))
        await eventually(lambda: publisher.published == 1, what="the first publish")
        assert served(publisher) == {"a", "b"}


async def test_an_optional_source_is_waited_for_its_grace_then_joins_when_it_loads(caplog) -> None:
    async with running(["local", "remote"], optional={"remote": 10.0}) as (registry, publisher, clock):
        registry.apply("local", FullSnapshot.of([svc("a", 1)]))
        await clock.advance(9.75)
        assert publisher.published == 0 and publisher.first.blocking(clock.now()) == ["remote"]
        await clock.advance(0.25)
        await eventually(lambda: publisher.published == 1, what="the publish past the grace")
        assert served(publisher) == {"a"} and publisher.first.missing() == ["remote"]
        assert "publish.without_sources" in [r.getMessage() for r in caplog.records]
        registry.apply("remote", FullSnapshot.of([svc("b", 2)]))
        await eventually(lambda: publisher.published == 2, what="the late source published")
        assert served(publisher) == {"a", "b"}


async def test_an_optional_source_that_loads_in_its_grace_is_in_the_first_snapshot() -> None:
    async with running(["local", "remote"], optional={"remote": 10.0}) as (registry, publisher, clock):
        registry.apply("local", FullSnapshot.of([svc("a", 1)]))
        await clock.advance(5)
        registry.apply("remote", FullSnapshot.of([svc("b", 2)]))
        await eventually(lambda: publisher.published == 1, what="the first publish")
        assert served(publisher) == {"a", "b"}
        assert clock.sleeping == 0  # the grace timer is gone with the wait
