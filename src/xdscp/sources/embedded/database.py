"""SQLite storage for what must survive a restart: service settings and persistent instances.

Ephemeral instances are memory-only, as in Nacos: they come back with their heartbeats.
Every write is committed (WAL, synchronous=FULL) before the API answers success.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from pydantic import ValidationError

from xdscp.logfmt import log_event
from xdscp.model.service import Instance, Service, ServiceKey

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS services (
    namespace TEXT NOT NULL, grp TEXT NOT NULL, name TEXT NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (namespace, grp, name)
);
CREATE TABLE IF NOT EXISTS instances (
    namespace TEXT NOT NULL, grp TEXT NOT NULL, service TEXT NOT NULL,
    host TEXT NOT NULL, port INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (namespace, grp, service, host, port)
);
"""


class RegistryDatabase:
    """One SQLite file; used from the event loop thread only (writes take well under a ms)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def load(self) -> tuple[list[Service], list[tuple[ServiceKey, Instance]]]:
        """Everything stored; a row that no longer validates is logged and skipped."""
        services: list[Service] = []
        for ns, grp, name, spec in self._db.execute("SELECT namespace, grp, name, spec FROM services"):
            try:
                services.append(Service.model_validate_json(spec))
            except ValidationError as e:
                log_event(log, logging.ERROR, "database.bad_row", table="services",
                          service=f"{ns}/{grp}/{name}", reason=str(e).splitlines()[0])
        instances: list[tuple[ServiceKey, Instance]] = []
        rows = self._db.execute("SELECT namespace, grp, service, host, port, data FROM instances")
        for ns, grp, svc, host, port, data in rows:
            try:
                instances.append((ServiceKey(ns, grp, svc), Instance.model_validate_json(data)))
            except ValidationError as e:
                log_event(log, logging.ERROR, "database.bad_row", table="instances",
                          service=f"{ns}/{grp}/{svc}", instance=f"{host}:{port}", reason=str(e).splitlines()[0])
        return services, instances

    def save_service(self, spec: Service) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO services (namespace, grp, name, spec) VALUES (?, ?, ?, ?)",
            (spec.namespace, spec.group, spec.name, spec.model_dump_json(exclude={"instances"}, exclude_defaults=True)),
        )

    def save_instance(self, key: ServiceKey, inst: Instance) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO instances (namespace, grp, service, host, port, data) VALUES (?, ?, ?, ?, ?, ?)",
            (key.namespace, key.group, key.name, inst.host, inst.port, inst.model_dump_json(exclude_defaults=True)),
        )

    def delete_instance(self, key: ServiceKey, host: str, port: int) -> None:
        self._db.execute(
            "DELETE FROM instances WHERE namespace = ? AND grp = ? AND service = ? AND host = ? AND port = ?",
            (key.namespace, key.group, key.name, host, port),
        )

    def import_services(self, services: list[Service]) -> None:
        """Store services with their persistent instances in one transaction (bulk loads)."""
        self._db.execute("BEGIN")
        try:
            for svc in services:
                self.save_service(svc)
                for inst in svc.instances:
                    if not inst.ephemeral:
                        self.save_instance(svc.key, inst)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
