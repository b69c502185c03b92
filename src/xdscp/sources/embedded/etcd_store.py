"""The embedded registry's state in etcd, shared by every replica (``store: etcd``).

Keys under ``prefix`` (default ``/xdscp/registry``), each segment URL-quoted::

    services/{namespace}/{group}/{name}               the service's settings (JSON)
    instances/{namespace}/{group}/{name}/{host}/{port}  one instance (JSON); an ephemeral one
                                                      is bound to a lease of heartbeat_remove_after
    alive/{namespace}/{group}/{name}/{host}/{port}    ephemeral only, bound to a lease of
                                                      heartbeat_unhealthy_after; gone = unhealthy
    leader                                            the replica that runs the active checks
    ref-offset                                        Nacos' lastRefTime is this plus the
                                                      revision (see ref_times)

Every replica mirrors the prefix with one watch and builds its services from the mirror
alone, so replicas with the same etcd revision serve byte-identical resources. A write
goes to etcd first and returns once this replica's mirror has applied it, so a client
reads its own writes; the watch is the only way into the view, on the writer too.

A heartbeat, on any replica, renews the instance's two leases. etcd expires a silent
instance once, for every replica: no replica decides it alone, and none needs to be up.

An instance a Nacos gRPC connection holds has both keys bound to this replica's one
connection lease, renewed every ttl/3 while the replica lives: one renewal for all of
its connections. If the replica dies, etcd removes those instances a TTL later. If the
lease is lost while the replica lives (etcd away for longer than the TTL), a new one
is granted and every held instance is written again.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable
from typing import Any

from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.model.service import Instance, Service, ServiceKey
from xdscp.model.updates import FullSnapshot, ServiceChange
from xdscp.sources.embedded.contract import CheckTarget, StoreUnavailable
from xdscp.sources.embedded.etcd_view import EtcdServiceView, instance_path, service_path
from xdscp.sources.embedded.ref_times import WallMs, parse_offset, raised_offset, wall_ms
from xdscp.sources.embedded.store_base import StoreBase
from xdscp.sources.etcd.client import (
    EtcdClient,
    EtcdError,
    delete_op,
    key_absent,
    key_lease,
    key_present,
    key_value,
    put_op,
)
from xdscp.sources.etcd.mirror import EtcdMirror
from xdscp.sources.health import SourceHealth

log = logging.getLogger(__name__)

Address = tuple[str, int]
_ALIVE = b"1"
REF_OFFSET = "ref-offset"  # relative to the prefix


async def _false() -> bool:
    return False


class EtcdStore(StoreBase):
    """Services mirrored from etcd; writes are etcd transactions (see the module doc)."""

    store_kind = "etcd"

    def __init__(self, source_name: str, client: EtcdClient, prefix: str, unhealthy_after: float,
                 remove_after: float, connection_lease_ttl: int, now_ms: WallMs = wall_ms) -> None:
        super().__init__(source_name)
        self.now_ms = now_ms
        self._listed = asyncio.Event()  # set at each full listing, when the lastRefTime offset is checked
        self.client = client
        # etcd is this registry's own store: retry it often (every 2 s at most) while it is away
        self.health = SourceHealth(source_name, log, 0.25, max_delay=2.0)
        self.mirror = EtcdMirror(source_name, client, prefix, self.health, self._reset, self._changed)
        self.prefix = self.mirror.prefix
        # etcd leases are whole seconds
        self._unhealthy_ttl = max(1, math.ceil(unhealthy_after))
        self._remove_ttl = max(self._unhealthy_ttl, math.ceil(remove_after))
        self.view = EtcdServiceView(lambda: self.mirror.kvs, self._bad_record)
        self._registry: Registry | None = None
        self._connection_ttl = connection_lease_ttl
        self._connection_lease = 0  # granted on first use
        self._lease_lock = asyncio.Lock()
        self._held: dict[tuple[ServiceKey, Address], tuple[str, Instance]] = {}  # -> owner, instance

    @property
    def last_error(self) -> str | None:
        return self.health.last_error

    def bind(self, registry: Registry) -> None:
        """Publish to ``registry``; the first snapshot is the first listing of etcd."""
        self._registry = registry

    async def run(self) -> None:
        try:
            await asyncio.gather(self.mirror.run(), self._renew_connection_lease(), self._raise_ref_offset())
        finally:
            await self.client.close()

    async def read_once(self) -> None:
        """List etcd once (``xdscp validate``); a failure is ``last_error``. No lease is taken."""
        try:
            await self.mirror.list_all()
        except EtcdError as e:
            self.health.failed(str(e))
        finally:
            await self.client.close()

    # -- reads ------------------------------------------------------------------------
    def service(self, key: ServiceKey) -> Service | None:
        return self.view.services.get(key)

    def _service_keys(self) -> Iterable[ServiceKey]:
        return self.view.services.keys()

    def _stored(self, key: ServiceKey, host: str, port: int) -> Instance | None:
        return self.view.record(key, host, port)

    def check_targets(self) -> list[CheckTarget]:
        return [CheckTarget(key, i.host, i.port) for key, svc in self.view.services.items()
                for i in svc.instances if not i.ephemeral]

    def ref_time(self, key: ServiceKey) -> int:
        """The offset plus the revision the mirror is at: the same on every replica at that
        revision, and past every earlier state's (see ref_times)."""
        _, offset = self._ref_offset()
        if offset is None:  # a new registry's first moments, before any replica wrote it
            return self.now_ms()
        return offset + self.mirror.revision

    def _ref_offset(self) -> tuple[bytes | None, int | None]:
        """The offset key's value as mirrored, and the offset it holds (None: absent or garbage)."""
        held = self.mirror.kvs.get(REF_OFFSET)
        return (held.value, parse_offset(held.value)) if held is not None else (None, None)

    # -- writes -----------------------------------------------------------------------
    async def upsert_service(self, spec: Service) -> Service:
        """Create a service or replace its settings (its instances stay)."""
        spec = spec.model_copy(update={"instances": ()})
        await self._commit([put_op(self._key("services", spec.key), spec.model_dump_json(exclude={"instances"}))])
        return self.view.services.get(spec.key, spec)

    async def register(self, key: ServiceKey, inst: Instance) -> None:
        """Add or replace an instance; a new service gets default settings."""
        ik, ak = self._instance_keys(key, inst.host, inst.port)
        self._held.pop((key, (inst.host, inst.port)), None)
        if inst.ephemeral:
            # concurrently: etcd commits the two grants together, one disk sync instead of two
            remove_lease, alive_lease = await asyncio.gather(self._grant(self._remove_ttl),
                                                             self._grant(self._unhealthy_ttl))
            ops = [put_op(ik, inst.model_dump_json(), remove_lease), put_op(ak, _ALIVE, alive_lease)]
        else:
            ops = [put_op(ik, inst.model_dump_json()), delete_op(ak)]
        self._forget_checks(key, (inst.host, inst.port))
        await self._commit_instance(key, ops)
        log_event(log, logging.INFO, "instance.registered", service=repr(key), instance=f"{inst.host}:{inst.port}",
                  ephemeral=inst.ephemeral, healthy=inst.healthy, enabled=inst.enabled, store="etcd")

    async def hold(self, owner: str, key: ServiceKey, inst: Instance) -> None:
        inst = inst.model_copy(update={"ephemeral": True})
        self._held[(key, (inst.host, inst.port))] = (owner, inst)
        try:
            await self._put_held(key, inst, await self._lease_for_connections())
        except StoreUnavailable:
            self._held.pop((key, (inst.host, inst.port)), None)
            raise
        log_event(log, logging.INFO, "instance.registered", service=repr(key), instance=f"{inst.host}:{inst.port}",
                  ephemeral=True, healthy=inst.healthy, enabled=inst.enabled, held_by=owner, store="etcd")

    async def release(self, owner: str, key: ServiceKey, host: str, port: int) -> bool:
        held = self._held.get((key, (host, port)))
        if held is None or held[0] != owner:
            return False
        del self._held[(key, (host, port))]
        ik, ak = self._instance_keys(key, host, port)
        # only while still bound to this replica's lease: a re-registration elsewhere stays
        data = await self._commit([delete_op(ik), delete_op(ak)], [], [key_lease(ik, self._connection_lease)])
        if data.get("succeeded"):
            log_event(log, logging.INFO, "instance.deregistered", service=repr(key), instance=f"{host}:{port}",
                      released_by=owner, store="etcd")
        return bool(data.get("succeeded"))

    async def hold_many(self, owner: str, key: ServiceKey, hold: list[Instance],
                        release: list[tuple[str, int]]) -> None:
        """Releases in one transaction (each only while still bound to this replica's lease),
        the held instances in another: two commits for a batch, not one per instance."""
        mine = [(h, p) for h, p in release if (self._held.get((key, (h, p))) or ("",))[0] == owner]
        for addr in mine:
            del self._held[(key, addr)]
        if mine:
            keys = [self._instance_keys(key, h, p) for h, p in mine]
            deletes = [delete_op(k) for pair in keys for k in pair]
            data = await self._commit(deletes, [], [key_lease(ik, self._connection_lease) for ik, _ in keys])
            if not data.get("succeeded"):  # one was re-registered elsewhere: release one by one
                for ik, ak in keys:
                    await self._commit([delete_op(ik), delete_op(ak)], [], [key_lease(ik, self._connection_lease)])
        held = [inst.model_copy(update={"ephemeral": True}) for inst in hold]
        for inst in held:
            self._held[(key, (inst.host, inst.port))] = (owner, inst)
        if not held:
            return
        lease = await self._lease_for_connections()
        ops = []
        for inst in held:
            ik, ak = self._instance_keys(key, inst.host, inst.port)
            ops += [put_op(ik, inst.model_dump_json(), lease), put_op(ak, _ALIVE, lease)]
        try:
            await self._commit_instance(key, ops)
        except StoreUnavailable:
            for inst in held:
                self._held.pop((key, (inst.host, inst.port)), None)
            raise
        log_event(log, logging.INFO, "instances.registered", service=repr(key), count=len(held), held_by=owner,
                  released=len(mine), store="etcd")

    async def _put_held(self, key: ServiceKey, inst: Instance, lease: int) -> None:
        ik, ak = self._instance_keys(key, inst.host, inst.port)
        await self._commit_instance(key, [put_op(ik, inst.model_dump_json(), lease), put_op(ak, _ALIVE, lease)])

    async def _commit_instance(self, key: ServiceKey, ops: list[dict[str, Any]]) -> None:
        """An instance's writes; a service not in etcd yet is created with default settings."""
        sk = self._key("services", key)
        default = Service(name=key.name, namespace=key.namespace, group=key.group)
        await self._commit(ops + [put_op(sk, default.model_dump_json(exclude={"instances"}))], ops, [key_absent(sk)])

    async def _lease_for_connections(self) -> int:
        async with self._lease_lock:
            if not self._connection_lease:
                self._connection_lease = await self._grant(self._connection_ttl)
            return self._connection_lease

    async def _renew_connection_lease(self) -> None:
        """Keep the connection lease alive; a lost one is replaced and every held instance rewritten."""
        while True:
            await asyncio.sleep(self._connection_ttl / 3)
            lease = self._connection_lease
            if not lease:
                continue
            try:
                if await self.client.keepalive(lease):
                    continue
                async with self._lease_lock:
                    if self._connection_lease == lease:
                        self._connection_lease = 0
                new = await self._lease_for_connections()
                held = list(self._held.items())
                for (key, _), (_, inst) in held:
                    await self._put_held(key, inst, new)
                log_event(log, logging.WARNING, "store.connection_lease_renewed", source=self.source_name,
                          lease=new, instances=len(held))
            except (EtcdError, StoreUnavailable) as e:
                log_event(log, logging.DEBUG, "store.connection_lease_unreachable", source=self.source_name,
                          reason=str(e))

    async def deregister(self, key: ServiceKey, host: str, port: int) -> bool:
        """Remove an instance at once; False if it was not there."""
        ik, ak = self._instance_keys(key, host, port)
        self._held.pop((key, (host, port)), None)
        data = await self._commit([delete_op(ik), delete_op(ak)])
        deleted = int(data["responses"][0].get("response_delete_range", {}).get("deleted", 0) or 0)
        if deleted:
            log_event(log, logging.INFO, "instance.deregistered", service=repr(key), instance=f"{host}:{port}",
                      store="etcd")
        return deleted > 0

    async def _rewrite(self, key: ServiceKey, inst: Instance) -> None:
        held = self._held.get((key, (inst.host, inst.port)))
        if held is not None:
            await self.hold(held[0], key, inst)  # a held instance stays held
        else:
            await self.register(key, inst)

    async def beat(self, key: ServiceKey, host: str, port: int, template: Instance | None = None) -> bool:
        """Renew an ephemeral instance's leases; an unknown instance is registered from ``template``.

        While etcd cannot be reached a known instance's beat is answered as found: etcd renews
        every lease when it gets a leader back, so the instance is not lost meanwhile.
        """
        ik, ak = self._instance_keys(key, host, port)
        held = self.mirror.kvs.get(ik.removeprefix(self.prefix))
        alive = self.mirror.kvs.get(ak.removeprefix(self.prefix))
        try:
            if held is not None and held.lease == 0:
                return True  # persistent: nothing to renew
            if held is not None:
                # both renewals at once: a beat costs one round trip
                kept, still_alive = await asyncio.gather(
                    self._keepalive(held.lease), self._keepalive(alive.lease) if alive is not None else _false())
                if kept:
                    if not still_alive:  # silent for heartbeat_unhealthy_after: the beat heals it
                        lease = await self._grant(self._unhealthy_ttl)
                        await self._commit([put_op(ak, _ALIVE, lease)], [], [key_present(ik)])
                        log_event(log, logging.INFO, "instance.beat_resumed", service=repr(key),
                                  instance=f"{host}:{port}", store="etcd")
                    return True
        except StoreUnavailable:
            return held is not None
        if template is None:
            return False  # etcd expired it (or it never was): the client registers again
        await self.register(key, template.model_copy(update={"ephemeral": True}))
        return True

    async def _write_health(self, key: ServiceKey, inst: Instance) -> None:
        ik, _ = self._instance_keys(key, inst.host, inst.port)
        await self._commit([put_op(ik, inst.model_dump_json())], [], [key_present(ik)])

    async def _raise_ref_offset(self) -> None:
        """After each full listing, raise the lastRefTime offset so that stamps are at
        least this replica's wall clock; a replica that raced us and won is read back and
        checked again. Never lowered, so stamps never go back."""
        key = self.prefix + REF_OFFSET
        while True:
            await self._listed.wait()
            self._listed.clear()
            held, offset = self._ref_offset()
            new = raised_offset(offset, self.mirror.revision, self.now_ms())
            if new is None:
                continue
            try:
                data = await self._commit([put_op(key, str(new))], [],
                                          [key_absent(key) if held is None else key_value(key, held)])
            except StoreUnavailable as e:  # the next listing (once etcd is back) tries again
                log_event(log, logging.WARNING, "store.ref_offset_unwritten", source=self.source_name, reason=str(e))
                continue
            if not data.get("succeeded"):
                self._listed.set()
            else:
                log_event(log, logging.INFO, "store.ref_offset_raised", source=self.source_name, offset=new,
                          revision=self.mirror.revision)

    # -- etcd calls -------------------------------------------------------------------
    async def _commit(self, success: list[dict[str, Any]], failure: list[dict[str, Any]] | None = None,
                      compare: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """One transaction; returns once this replica's view includes it."""
        try:
            data = await self.client.txn(success, failure, compare)
        except EtcdError as e:
            raise StoreUnavailable(f"the registry cannot commit to etcd: {e}") from None
        revision = int(data["header"]["revision"])
        self.mirror.wake()  # etcd is back, if the watch was waiting to retry
        if not await self.mirror.wait_for(revision, self.client.timeout):
            log_event(log, logging.WARNING, "store.lagging", source=self.source_name, revision=revision,
                      applied=self.mirror.revision)
        return data

    async def _grant(self, ttl: int) -> int:
        try:
            return await self.client.grant(ttl)
        except EtcdError as e:
            raise StoreUnavailable(f"the registry cannot commit to etcd: {e}") from None

    async def _keepalive(self, lease: int) -> bool:
        try:
            return await self.client.keepalive(lease)
        except EtcdError as e:
            raise StoreUnavailable(f"the registry cannot reach etcd: {e}") from None

    # -- the view ---------------------------------------------------------------------
    def _key(self, kind: str, key: ServiceKey) -> str:
        return f"{self.prefix}{kind}/{service_path(key)}"

    def _instance_keys(self, key: ServiceKey, host: str, port: int) -> tuple[str, str]:
        path = instance_path(key, host, port)
        return f"{self.prefix}instances/{path}", f"{self.prefix}alive/{path}"

    def _reset(self) -> None:
        self.view.reset()
        self._listed.set()
        if self._registry is not None:
            self._registry.apply(self.source_name, FullSnapshot(dict(self.view.services)))
        self._tell(None)
        log_event(log, logging.INFO, "source.loaded", source=self.source_name, revision=self.mirror.revision,
                  services=len(self.view.services), store="etcd")

    def _changed(self, rels: set[str]) -> None:
        upserted, removed, touched = self.view.changed(rels)
        if self._registry is not None and (upserted or removed):
            self._registry.apply(self.source_name, ServiceChange(tuple(upserted), tuple(removed)))
        if touched:
            self._tell(touched)

    def _bad_record(self, rel: str, reason: str) -> None:
        log_event(log, logging.ERROR, "store.bad_record", source=self.source_name, key=self.prefix + rel,
                  reason=reason)
