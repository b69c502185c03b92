"""What the registration APIs and the checker need from an embedded registry store.

Two stores keep this contract: ``EmbeddedStore`` (one process, SQLite) and ``EtcdStore``
(replicas sharing etcd). A write returns once it is durable and visible to reads on the
same store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from xdscp.errors import XdscpError
from xdscp.model.registry import Registry
from xdscp.model.service import Instance, Service, ServiceKey


class InstanceNotFound(XdscpError):
    def __init__(self, key: ServiceKey, host: str, port: int) -> None:
        super().__init__(f"instance {host}:{port} not found in service {key!r}")


class StoreUnavailable(XdscpError):
    """The store cannot commit a write now (etcd unreachable); nothing was changed."""


@dataclass(frozen=True, slots=True)
class CheckTarget:
    key: ServiceKey
    host: str
    port: int


@dataclass(slots=True)
class CheckCounts:
    """Consecutive probe results of one instance; health flips at a threshold."""

    successes: int = 0
    failures: int = 0

    def flips(self, ok: bool, healthy: bool, healthy_threshold: int, unhealthy_threshold: int) -> bool:
        """Count ``ok``; True when the instance's health must flip now."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            return not healthy and self.successes >= healthy_threshold
        self.successes, self.failures = 0, self.failures + 1
        return healthy and self.failures >= unhealthy_threshold


# Told which services changed in the store (None: any may have, after a reload), after
# the change is visible to reads; the Nacos gRPC face pushes to subscribers from it.
StoreListener = Callable[[frozenset[ServiceKey] | None], None]


class RegistryStore(Protocol):
    source_name: str

    def bind(self, registry: Registry) -> None: ...
    def add_listener(self, listener: StoreListener) -> None: ...
    def service(self, key: ServiceKey) -> Service | None: ...
    def services(self, namespace: str | None = None, group: str | None = None) -> list[Service]: ...
    def check_targets(self) -> list[CheckTarget]: ...
    def ref_time(self, key: ServiceKey) -> int:
        """Nacos' lastRefTime of ``key`` (a service or not): see ref_times."""
        ...
    async def upsert_service(self, spec: Service) -> Service: ...
    async def register(self, key: ServiceKey, inst: Instance) -> None: ...
    async def deregister(self, key: ServiceKey, host: str, port: int) -> bool: ...
    async def update(self, key: ServiceKey, host: str, port: int, changes: dict[str, Any]) -> Instance: ...
    async def beat(self, key: ServiceKey, host: str, port: int, template: Instance | None = None) -> bool: ...
    async def record_check(self, target: CheckTarget, ok: bool, healthy_threshold: int,
                           unhealthy_threshold: int) -> None: ...

    # An ephemeral instance held by a connection (Nacos 2.x): no heartbeat expires it; it
    # lives until released, or, with replicas, until the replica holding it dies.
    async def hold(self, owner: str, key: ServiceKey, inst: Instance) -> None: ...
    async def release(self, owner: str, key: ServiceKey, host: str, port: int) -> bool:
        """Remove the instance if ``owner`` still holds it (not if re-registered since)."""
        ...

    async def hold_many(self, owner: str, key: ServiceKey, hold: list[Instance],
                        release: list[tuple[str, int]]) -> None:
        """A connection's whole registration in one service at once (Nacos' batch register):
        ``hold`` these, ``release`` those it holds; one store transaction, one change pushed."""
        ...
