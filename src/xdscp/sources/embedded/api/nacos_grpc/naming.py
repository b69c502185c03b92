"""Nacos' naming requests over gRPC, answered from the embedded registry's store.

As the Nacos server's handlers (naming/remote/rpc/handler) do:
- InstanceRequest registers an ephemeral instance held by the connection. A connection
  has one registration per service: registering again replaces it, deregistering
  removes it. BatchInstanceRequest replaces it with a set of instances.
- PersistentInstanceRequest registers or deregisters a persistent instance, which no
  connection holds.
- SubscribeServiceRequest answers the service and pushes it on every change;
  ServiceQueryRequest answers it once; ServiceListRequest pages a group's service names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from xdscp.documents import field_path
from xdscp.errors import XdscpError
from xdscp.model.service import DEFAULT_GROUP, DEFAULT_NAMESPACE, Instance, ServiceKey
from xdscp.nacos_protocol import nacos_instance
from xdscp.sources.embedded.api.nacos_grpc.connection import Address, NacosConnection
from xdscp.sources.embedded.api.nacos_views import HeartbeatPolicy, service_info, service_key
from xdscp.sources.embedded.api.request_params import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, to_bool, to_int
from xdscp.sources.embedded.contract import RegistryStore

# Nacos' error codes (NacosException) that these answers carry
INVALID_PARAM = 400
NO_RIGHT = 403
SERVER_ERROR = 500
BAD_GATEWAY = 502
OVER_THRESHOLD = 503
UN_REGISTER = 301
NO_HANDLER = 302

REGISTER, DEREGISTER, BATCH_REGISTER = "registerInstance", "deregisterInstance", "batchRegisterInstance"
# Requests that change the registry: with a write token set, they need it.
WRITES = frozenset({"InstanceRequest", "BatchInstanceRequest", "PersistentInstanceRequest"})

Answer = tuple[str, dict[str, Any]]
Handler = Callable[[NacosConnection, dict[str, Any]], Awaitable[Answer]]


class NacosRequestError(XdscpError):
    """A request Nacos would refuse; answered with ``code`` in the request's response type."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


class NamingRequests:
    """The handlers by request type; each returns (response type, response fields)."""

    def __init__(self, store: RegistryStore, beats: HeartbeatPolicy, max_subscriptions: int) -> None:
        self.store = store
        self.beats = beats
        self.max_subscriptions = max_subscriptions
        # who subscribes to each service: a change is pushed to its subscribers without
        # visiting every connection (kept with each connection's own ``subscribed``)
        self.subscribers: dict[ServiceKey, set[NacosConnection]] = {}
        self.handlers: dict[str, Handler] = {
            "HealthCheckRequest": self.health_check,
            "InstanceRequest": self.instance,
            "BatchInstanceRequest": self.batch_instance,
            "PersistentInstanceRequest": self.persistent_instance,
            "SubscribeServiceRequest": self.subscribe,
            "ServiceQueryRequest": self.query,
            "ServiceListRequest": self.list_services,
        }

    # -- the requests ----------------------------------------------------------------------
    async def health_check(self, conn: NacosConnection, body: dict[str, Any]) -> Answer:
        return "HealthCheckResponse", {}

    async def instance(self, conn: NacosConnection, body: dict[str, Any]) -> Answer:
        key = _key(body)
        kind = body.get("type")
        if kind == REGISTER:
            inst = _instance(body.get("instance"), ephemeral=True)
            await self.replace_held(conn, key, {(inst.host, inst.port): inst})
        elif kind == DEREGISTER:
            await self.replace_held(conn, key, {})
        else:
            raise NacosRequestError(INVALID_PARAM, f"Unsupported request type {kind}")
        return "InstanceResponse", {"type": kind}

    async def batch_instance(self, conn: NacosConnection, body: dict[str, Any]) -> Answer:
        key = _key(body)
        kind = body.get("type")
        if kind != BATCH_REGISTER:
            raise NacosRequestError(INVALID_PARAM, f"Unsupported request type {kind}")
        raw = body.get("instances")
        if not isinstance(raw, list):
            raise NacosRequestError(INVALID_PARAM, "Param 'instances' must be a list of instances")
        batch: dict[Address, Instance] = {}
        for item in raw:
            inst = _instance(item, ephemeral=True)
            batch[(inst.host, inst.port)] = inst
        await self.replace_held(conn, key, batch)
        return "BatchInstanceResponse", {"type": kind}

    async def persistent_instance(self, conn: NacosConnection, body: dict[str, Any]) -> Answer:
        key = _key(body)
        kind = body.get("type")
        inst = _instance(body.get("instance"), ephemeral=False)
        if kind == REGISTER:
            await self.store.register(key, inst)
        elif kind == DEREGISTER:
            await self.store.deregister(key, inst.host, inst.port)
        else:
            raise NacosRequestError(INVALID_PARAM, f"Unsupported request type {kind}")
        return "InstanceResponse", {"type": kind}

    async def subscribe(self, conn: NacosConnection, body: dict[str, Any]) -> Answer:
        key = _key(body)
        clusters = _clusters(body.get("clusters"))
        if _bool(body.get("subscribe"), "subscribe", True):
            if key not in conn.subscribed and len(conn.subscribed) >= self.max_subscriptions:
                raise NacosRequestError(OVER_THRESHOLD, f"a connection may subscribe to {self.max_subscriptions} "
                                                        "services at most")
            conn.subscribed[key] = clusters
            self.subscribers.setdefault(key, set()).add(conn)
        else:
            conn.subscribed.pop(key, None)
            self._unsubscribe(conn, key)
        return "SubscribeServiceResponse", {"serviceInfo": self.service_info(key, clusters)}

    async def query(self, conn: NacosConnection, body: dict[str, Any]) -> Answer:
        key = _key(body)
        healthy_only = _bool(body.get("healthyOnly", body.get("healthOnly")), "healthyOnly", False)
        info = self.service_info(key, _clusters(body.get("cluster")), healthy_only)
        return "QueryServiceResponse", {"serviceInfo": info}

    async def list_services(self, conn: NacosConnection, body: dict[str, Any]) -> Answer:
        page_no = to_int(body.get("pageNo", 1), "pageNo", low=1)
        page_size = to_int(body.get("pageSize", DEFAULT_PAGE_SIZE), "pageSize", low=1, high=MAX_PAGE_SIZE)
        namespace = _optional_str(body.get("namespace"), "namespace") or DEFAULT_NAMESPACE
        group = _optional_str(body.get("groupName"), "groupName") or DEFAULT_GROUP
        names = [s.name for s in self.store.services(namespace, group)]
        start = (page_no - 1) * page_size
        return "ServiceListResponse", {"count": len(names), "serviceNames": names[start:start + page_size]}

    # -- shared ------------------------------------------------------------------------------
    def service_info(self, key: ServiceKey, clusters: list[str], healthy_only: bool = False) -> dict[str, Any]:
        """The ServiceInfo answered or pushed now, stamped by the store (see ref_times)."""
        return service_info(key, self.store.service(key), self.beats, name=key.name, clusters=clusters,
                            healthy_only=healthy_only, ref_time=self.store.ref_time(key))

    async def replace_held(self, conn: NacosConnection, key: ServiceKey, instances: dict[Address, Instance]) -> None:
        """Make ``instances`` the connection's registration in ``key`` (empty: none)."""
        old = conn.held.get(key, set())
        gone = sorted(old - instances.keys())
        await self.store.hold_many(conn.id, key, list(instances.values()), gone)
        now = (old - set(gone)) | instances.keys()
        if now:
            conn.held[key] = now
        else:
            conn.held.pop(key, None)

    def forget(self, conn: NacosConnection) -> None:
        """Drop a closed connection's subscriptions."""
        for key in conn.subscribed:
            self._unsubscribe(conn, key)
        conn.subscribed.clear()

    def _unsubscribe(self, conn: NacosConnection, key: ServiceKey) -> None:
        subs = self.subscribers.get(key)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self.subscribers[key]

    async def release_all(self, conn: NacosConnection) -> int:
        """Remove every instance the connection holds; how many there were."""
        count = 0
        for key, addrs in sorted(conn.held.items()):
            for host, port in sorted(addrs):
                await self.store.release(conn.id, key, host, port)
                count += 1
        conn.held.clear()
        return count


def _key(body: dict[str, Any]) -> ServiceKey:
    name = body.get("serviceName")
    if not isinstance(name, str) or not name:
        raise NacosRequestError(INVALID_PARAM, "Param 'serviceName' is required.")
    return service_key(name, _optional_str(body.get("groupName"), "groupName"),
                       _optional_str(body.get("namespace"), "namespace"))


def _optional_str(raw: Any, name: str) -> str | None:
    """A string parameter that may be left out (None, or empty: the default); anything but a
    string is refused, never taken for the default."""
    if raw is None or isinstance(raw, str):
        return raw or None
    raise NacosRequestError(INVALID_PARAM, f"Param '{name}' must be a string")


def _bool(raw: Any, name: str, default: bool) -> bool:
    return default if raw is None else to_bool(raw, name)


def _instance(raw: Any, *, ephemeral: bool) -> Instance:
    if not isinstance(raw, dict):
        raise NacosRequestError(INVALID_PARAM, "Param 'instance' must be an instance object")
    try:
        return Instance.model_validate(nacos_instance(raw, ephemeral))
    except ValidationError as e:
        err = e.errors()[0]
        field = {"host": "ip", "cluster": "clusterName"}.get(field_path(err["loc"]), field_path(err["loc"]))
        raise NacosRequestError(INVALID_PARAM, f"Param '{field}' is invalid: {err['msg']}") from None


def _clusters(raw: Any) -> list[str]:
    return [c for c in raw.split(",") if c] if isinstance(raw, str) else []
