"""``kind: etcd``: services as JSON values under a key prefix, followed with etcd's watch.

Schema, under ``prefix`` (default ``/xdscp/services``):

* ``{prefix}/{service}/{instance-id}``: one instance, the registry file's instance
  object (``{"host": "10.0.0.1", "port": 8080, "weight": 2, ...}``). The id is free
  (``10.0.0.1:8080``, a pod name, a lease-bound key).
* ``{prefix}/{service}``: optional service settings, the registry file's service
  object without ``name`` and ``instances`` (``{"lb_policy": "RANDOM"}``).

It speaks etcd's v3 JSON gateway (``EtcdClient``) and follows the prefix with an
``EtcdMirror``: a watch that resumes where it stopped, and a new listing after a
compaction. While etcd cannot be reached the last good view stays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.model.service import Service, ServiceKey
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.sources.etcd.client import EtcdAccess, EtcdClient
from xdscp.sources.etcd.mirror import EtcdMirror
from xdscp.sources.health import RemoteSource, SourceHealth
from xdscp.sources.salvage import salvage_services

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EtcdSourceSettings:
    access: EtcdAccess
    prefix: str


class EtcdSource(RemoteSource):
    """Lists ``prefix`` once, then follows it with a watch from the listed revision."""

    kind = "etcd"

    def __init__(self, name: str, cfg: EtcdSourceSettings) -> None:
        self.name = name
        self.health = SourceHealth(name, log, 0.5)
        self.client = EtcdClient(cfg.access)
        self.mirror = EtcdMirror(name, self.client, cfg.prefix, self.health, self._reset, self._changed)
        self.prefix = self.mirror.prefix
        self._applied: dict[str, ServiceKey] = {}  # service name -> the key it was applied under
        self._registry: Registry | None = None

    @property
    def revision(self) -> int:
        return self.mirror.revision

    async def run(self, registry: Registry) -> None:
        self._registry = registry
        try:
            await self.mirror.run()
        finally:
            await self.client.close()

    def _reset(self) -> None:
        assert self._registry is not None
        services = self._build(self._service_names(self.mirror.kvs))
        self._applied = {s.name: s.key for s in services}
        changed = self._registry.apply(self.name, FullSnapshot.of(services))
        log_event(log, logging.INFO, "source.loaded", source=self.name, revision=self.mirror.revision,
                  services=len(services), changed=len(changed))

    def _changed(self, keys: set[str]) -> None:
        assert self._registry is not None
        touched = self._service_names(keys)
        services = self._build(touched)
        present = {s.name: s.key for s in services}
        # Removed: a service whose records are gone, or whose key moved (its settings
        # changed namespace or group).
        removed = [old for name in touched if (old := self._applied.get(name)) is not None
                   and present.get(name) != old]
        for name in touched:
            self._applied.pop(name, None)
        self._applied.update(present)
        self._registry.apply(self.name, ServiceChange(upserted=tuple(services), removed=tuple(removed)))
        log_event(log, logging.INFO, "source.changed", source=self.name, revision=self.mirror.revision,
                  services=sorted(touched))

    # -- records -> services -----------------------------------------------------------
    @staticmethod
    def _service_names(kvs: Iterable[str]) -> set[str]:
        return {k.split("/", 1)[0] for k in kvs if k}

    def _build(self, names: Iterable[str]) -> list[Service]:
        wanted = set(names)
        grouped: dict[str, list[tuple[str, bytes]]] = {}
        for key, entry in self.mirror.kvs.items():
            name = key.split("/", 1)[0]
            if name in wanted:
                grouped.setdefault(name, []).append((key, entry.value))
        records: list[dict[str, Any]] = []
        for name in sorted(grouped):
            settings: dict[str, Any] = {}
            instances: list[Any] = []
            for key, value in sorted(grouped[name]):
                try:
                    doc = json.loads(value)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    self._dropped(f"{self.prefix}{key}: the value is not JSON; ignored")
                    continue
                if key == name:
                    if not isinstance(doc, dict):
                        self._dropped(f"{self.prefix}{key}: service settings must be an object; ignored")
                        continue
                    settings = {k: v for k, v in doc.items() if k not in ("name", "instances")}
                elif "/" in key[len(name) + 1:]:
                    self._dropped(f"{self.prefix}{key}: too deep (want {self.prefix}SERVICE/ID); ignored")
                else:
                    instances.append(doc)
            records.append({**settings, "name": name, "instances": instances})
        salvaged = salvage_services(records)
        for problem in salvaged.problems:
            self._dropped(problem)
        return salvaged.services

    def _dropped(self, problem: str) -> None:
        log_event(log, logging.WARNING, "source.entry_dropped", source=self.name, problem=problem)

