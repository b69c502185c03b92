"""The embedded registry's services as its etcd keys say they are.

Under the prefix, per service:
- ``services/<ns>/<group>/<name>``: its settings (a Service without instances, as JSON);
- ``instances/<ns>/<group>/<name>/<host>/<port>``: one instance (an Instance, as JSON);
- ``alive/<ns>/<group>/<name>/<host>/<port>``: an ephemeral instance's heartbeat, on a
  lease; without it the instance is served unhealthy.

Pure: fed the mirrored key/values (``kvs``), it builds and rebuilds services, decoding each
record once per value. The store owns etcd (writes, leases, the watch); this owns the
reading, and is tested without etcd.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote, unquote

from pydantic import ValidationError

from xdscp.model.service import Instance, Service, ServiceKey
from xdscp.sources.etcd.mirror import EtcdValue

# A record that does not validate: (its relative key, why). It is left out, never fatal.
BadRecord = Callable[[str, str], None]


def service_path(key: ServiceKey) -> str:
    return "/".join(quote(part, safe="") for part in (key.namespace, key.group, key.name))


def instance_path(key: ServiceKey, host: str, port: int) -> str:
    return f"{service_path(key)}/{quote(host, safe='')}/{port}"


def service_of(rel: str) -> ServiceKey | None:
    """The service a key under the prefix belongs to; None for the leader key or a foreign one."""
    parts = rel.split("/")
    if (parts[0] == "services" and len(parts) == 4) or (parts[0] in ("instances", "alive") and len(parts) == 6):
        return ServiceKey(*(unquote(p) for p in parts[1:4]))
    return None


class EtcdServiceView:
    """``services``: what the keys hold now. ``kvs()`` gives the mirrored keys (relative to
    the prefix); ``reset`` rebuilds everything, ``changed`` the services of some keys."""

    def __init__(self, kvs: Callable[[], Mapping[str, EtcdValue]], bad_record: BadRecord) -> None:
        self._kvs = kvs
        self._bad_record = bad_record
        self._keys: dict[ServiceKey, set[str]] = {}  # relative keys of each service
        self._decoded: dict[str, Service | Instance | None] = {}
        self.services: dict[ServiceKey, Service] = {}

    def reset(self) -> None:
        self._keys = {}
        self._decoded = {}
        for rel in self._kvs():
            key = service_of(rel)
            if key is not None:
                self._keys.setdefault(key, set()).add(rel)
        built = {key: self._build(key) for key in self._keys}
        self.services = {key: svc for key, svc in built.items() if svc is not None}

    def changed(self, rels: Iterable[str]) -> tuple[list[Service], list[ServiceKey], frozenset[ServiceKey]]:
        """Rebuild the services of these keys: (upserted, removed, every service touched)."""
        kvs = self._kvs()
        touched: set[ServiceKey] = set()
        for rel in rels:
            key = service_of(rel)
            if key is None:
                continue
            self._decoded.pop(rel, None)
            keys = self._keys.setdefault(key, set())
            if rel in kvs:
                keys.add(rel)
            else:
                keys.discard(rel)
            touched.add(key)
        upserted: list[Service] = []
        removed: list[ServiceKey] = []
        for key in sorted(touched):
            svc = self._build(key)
            if svc is None:
                self._keys.pop(key, None)
                if self.services.pop(key, None) is not None:
                    removed.append(key)
            else:
                self.services[key] = svc
                upserted.append(svc)
        return upserted, removed, frozenset(touched)

    def record(self, key: ServiceKey, host: str, port: int) -> Instance | None:
        """The instance as stored (its health before the heartbeat rule)."""
        rel = f"instances/{instance_path(key, host, port)}"
        found = self._decode(rel, Instance) if rel in self._kvs() else None
        return found if isinstance(found, Instance) else None

    def _build(self, key: ServiceKey) -> Service | None:
        """The service as the keys hold it; None if there are neither settings nor instances."""
        kvs = self._kvs()
        spec = Service(name=key.name, namespace=key.namespace, group=key.group)
        found = False
        instances: list[Instance] = []
        for rel in self._keys.get(key, ()):
            kind = rel.split("/", 1)[0]
            if kind == "alive":
                continue
            found = True
            record = self._decode(rel, Service if kind == "services" else Instance)
            if isinstance(record, Service):
                spec = record.model_copy(update={"name": key.name, "namespace": key.namespace,
                                                 "group": key.group, "instances": ()})
            elif isinstance(record, Instance):
                if record.ephemeral and record.healthy and f"alive/{rel.split('/', 1)[1]}" not in kvs:
                    record = record.model_copy(update={"healthy": False})  # silent: no heartbeat renewed it
                instances.append(record)
        if not found:
            return None
        instances.sort(key=lambda i: (i.host, i.port))
        return spec.model_copy(update={"instances": tuple(instances)})

    def _decode(self, rel: str, model: type[Service] | type[Instance]) -> Service | Instance | None:
        if rel in self._decoded:
            return self._decoded[rel]
        record: Service | Instance | None = None
        try:
            record = model.model_validate_json(self._kvs()[rel].value)
        except ValidationError as e:
            self._bad_record(rel, str(e).splitlines()[0])
        self._decoded[rel] = record
        return record
