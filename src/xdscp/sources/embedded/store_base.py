"""What the two registry stores do alike, written once.

``EmbeddedStore`` (one process, SQLite) and ``EtcdStore`` (replicas on etcd) differ in
where a write goes and how it comes back to reads. They share the rest: telling
listeners of changes, listing services, the update rule (change some fields, validate
the whole, keep a held instance held) and the active-check threshold flip. A store
supplies four things: ``service``, ``_service_keys``, ``_stored`` (an instance as stored,
before the heartbeat rule) and the two writes ``_rewrite`` and ``_write_health``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from xdscp.logfmt import log_event
from xdscp.model.service import Instance, Service, ServiceKey
from xdscp.sources.embedded.contract import CheckCounts, CheckTarget, InstanceNotFound, StoreListener

log = logging.getLogger(__name__)

Address = tuple[str, int]


class StoreBase(ABC):
    """The shared half of a registry store (see the module doc)."""

    store_kind: str  # "sqlite" or "etcd", in log events

    def __init__(self, source_name: str) -> None:
        self.source_name = source_name
        self._listeners: list[StoreListener] = []
        self._checks: dict[tuple[ServiceKey, Address], CheckCounts] = {}  # on the replica that probes

    # -- what each store supplies -----------------------------------------------------
    @abstractmethod
    def service(self, key: ServiceKey) -> Service | None: ...

    @abstractmethod
    def _service_keys(self) -> Iterable[ServiceKey]: ...

    @abstractmethod
    def _stored(self, key: ServiceKey, host: str, port: int) -> Instance | None:
        """The instance as stored (its health before the heartbeat rule); None if absent."""

    @abstractmethod
    async def _rewrite(self, key: ServiceKey, inst: Instance) -> None:
        """Store ``inst`` in place of the registered one, held by whoever held it."""

    @abstractmethod
    async def _write_health(self, key: ServiceKey, inst: Instance) -> None:
        """Store ``inst``, a persistent instance whose health a check flipped."""

    # -- shared -------------------------------------------------------------------------
    def add_listener(self, listener: StoreListener) -> None:
        self._listeners.append(listener)

    def _tell(self, changed: frozenset[ServiceKey] | None) -> None:
        """Tell the listeners which services changed (None: any may have)."""
        for listener in self._listeners:
            listener(changed)

    def services(self, namespace: str | None = None, group: str | None = None) -> list[Service]:
        keys = sorted(k for k in self._service_keys()
                      if (namespace is None or k.namespace == namespace) and (group is None or k.group == group))
        return [svc for svc in map(self.service, keys) if svc is not None]

    async def update(self, key: ServiceKey, host: str, port: int, changes: dict[str, Any]) -> Instance:
        """Change some fields of a registered instance (validated as a whole)."""
        old = self._stored(key, host, port)
        if old is None:
            raise InstanceNotFound(key, host, port)
        new = Instance.model_validate({**old.model_dump(), **changes, "host": host, "port": port})
        await self._rewrite(key, new)
        return new

    async def record_check(self, target: CheckTarget, ok: bool, healthy_threshold: int,
                           unhealthy_threshold: int) -> None:
        """Count a probe result; flip health when a threshold of consecutive results is reached."""
        slot = (target.key, (target.host, target.port))
        inst = self._stored(target.key, target.host, target.port)
        if inst is None or inst.ephemeral:  # deregistered while the probe ran, or heartbeats rule it
            self._checks.pop(slot, None)
            return
        if not self._checks.setdefault(slot, CheckCounts()).flips(ok, inst.healthy, healthy_threshold,
                                                                    unhealthy_threshold):
            return
        new = inst.model_copy(update={"healthy": not inst.healthy})
        await self._write_health(target.key, new)
        log_event(log, logging.WARNING if not new.healthy else logging.INFO,
                  "instance.check_failed" if not new.healthy else "instance.check_recovered",
                  service=repr(target.key), instance=f"{target.host}:{target.port}", store=self.store_kind)

    def _forget_checks(self, key: ServiceKey, addr: Address) -> None:
        """An instance re-registered or gone: its probe count starts again."""
        self._checks.pop((key, addr), None)
