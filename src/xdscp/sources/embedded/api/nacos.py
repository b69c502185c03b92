"""The Nacos naming Open API on the embedded registry: v1, v2 and the 3.x client API.

One implementation; a ``Dialect`` decides only the response shape. v1 answers ``ok``
or bare JSON, and errors as ``caused: <message>;`` with HTTP 400. v2 and v3 wrap
everything in ``{"code": 0, "message": "success", "data": ...}``, and errors carry
Nacos' error codes (10000 missing parameter, 20002 invalid parameter, 21000 bad service
name, 21003 instance not found).

3.x splits the API as Nacos 3 does: the client API (``/nacos/v3/client/ns``) registers,
renews (``heartBeat=true``), deregisters and lists one service's instances (``data`` is
the instance array); listing every service is the admin API's
``/nacos/v3/admin/ns/service/list`` (``pageItems``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from xdscp.documents import field_path
from xdscp.model.service import DEFAULT_GROUP, DEFAULT_NAMESPACE, Instance, ServiceKey
from xdscp.nacos_protocol import grouped_name, model_cluster
from xdscp.sources.embedded.api.nacos_views import HeartbeatPolicy, selected_hosts, service_info, service_key
from xdscp.sources.embedded.api.request_params import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ParamError, Params
from xdscp.sources.embedded.contract import InstanceNotFound, RegistryStore, StoreUnavailable

_PARAM_MISSING, _PARAM_INVALID, _SERVICE_NAME_ERROR, _INSTANCE_NOT_FOUND = 10000, 20002, 21000, 21003
_SERVER_ERROR = 30000
# Nacos' names for the Instance fields they set.
_PARAM_OF_FIELD = {"host": "ip", "cluster": "clusterName", "enabled": "enabled"}


@dataclass(frozen=True, slots=True)
class Dialect:
    """Response shapes of one API generation."""

    generation: int  # 1, 2 or 3: the Nacos API generation

    @property
    def unified(self) -> bool:
        return self.generation >= 2

    def ok(self, data: Any) -> web.Response:
        if self.unified:
            return web.json_response({"code": 0, "message": "success", "data": data})
        if isinstance(data, str):
            return web.Response(text=data)
        return web.json_response(data)

    def error(self, status: int, code: int, message: str) -> web.Response:
        if self.unified:
            return web.json_response({"code": code, "message": message, "data": None}, status=status)
        return web.Response(text=f"caused: {message};", status=status)


V1, V2, V3 = Dialect(1), Dialect(2), Dialect(3)
Handler = Callable[[Params, Dialect], Awaitable[Any]]


class NacosApi:
    """Routes for /nacos/v1/ns, /nacos/v2/ns and Nacos 3's client and admin paths onto an embedded registry store."""

    def __init__(self, store: RegistryStore, beats: HeartbeatPolicy) -> None:
        self.store = store
        self.beats = beats

    def routes(self) -> list[web.RouteDef]:
        table: list[web.RouteDef] = []
        for prefix, dialect in (("/nacos/v1/ns", V1), ("/nacos/v2/ns", V2)):
            table += [
                web.post(f"{prefix}/instance", self._wrap(self.register, dialect)),
                web.delete(f"{prefix}/instance", self._wrap(self.deregister, dialect)),
                web.put(f"{prefix}/instance", self._wrap(self.update, dialect)),
                web.put(f"{prefix}/instance/beat", self._wrap(self.beat, dialect)),
                web.get(f"{prefix}/instance/list", self._wrap(self.list_instances, dialect)),
                web.get(f"{prefix}/service/list", self._wrap(self.list_services, dialect)),
            ]
        client = "/nacos/v3/client/ns"
        table += [
            web.post(f"{client}/instance", self._wrap(self.register, V3)),
            web.delete(f"{client}/instance", self._wrap(self.deregister, V3)),
            web.get(f"{client}/instance/list", self._wrap(self.list_instances, V3)),
            web.get("/nacos/v3/admin/ns/service/list", self._wrap(self.list_services, V3)),
        ]
        return table

    @staticmethod
    def _wrap(handler: Handler, dialect: Dialect) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            values = dict(request.query)
            if request.body_exists and request.content_type in ("application/x-www-form-urlencoded",
                                                                   "multipart/form-data"):
                values.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
            try:
                return dialect.ok(await handler(Params(values), dialect))
            except ParamError as e:
                code = _PARAM_MISSING if e.missing else _PARAM_INVALID
                if e.param == "serviceName" and not e.missing:
                    code = _SERVICE_NAME_ERROR
                return dialect.error(400, code, str(e))
            except InstanceNotFound as e:
                return dialect.error(404 if dialect.unified else 400, _INSTANCE_NOT_FOUND, str(e))
            except StoreUnavailable as e:
                return dialect.error(503, _SERVER_ERROR, str(e))

        return endpoint

    # -- parameters -----------------------------------------------------------------
    @staticmethod
    def _service_key(p: Params) -> ServiceKey:
        return service_key(p.required("serviceName"), p.text("groupName"), p.text("namespaceId"))

    @staticmethod
    def _address(p: Params) -> tuple[str, int]:
        ip = p.required("ip")
        port = p.integer("port", required=True, low=1, high=65535)
        assert port is not None
        return ip, port

    @staticmethod
    def _instance(fields: dict[str, Any]) -> Instance:
        try:
            return Instance.model_validate(fields)
        except ValidationError as e:
            raise _param_error(e) from None

    @staticmethod
    def _enabled(p: Params, default: bool | None) -> bool | None:
        # Nacos takes "enabled"; its older clients (nacos-sdk-python 1.x included) send "enable".
        value = p.boolean("enabled")
        return value if value is not None else p.boolean("enable", default)

    # -- operations -----------------------------------------------------------------
    async def register(self, p: Params, dialect: Dialect) -> str:
        key = self._service_key(p)
        ip, port = self._address(p)
        if dialect.generation == 3 and p.boolean("heartBeat", False):
            # 3.x renews through the register call; an expired instance gets 21003 and re-registers.
            if not await self.store.beat(key, ip, port):
                raise InstanceNotFound(key, ip, port)
            return "ok"
        inst = self._instance({
            "host": ip, "port": port,
            "weight": p.number("weight", 1.0, low=0, high=10000),
            "healthy": p.boolean("healthy", True),
            "enabled": self._enabled(p, True),
            "ephemeral": p.boolean("ephemeral", True),
            "cluster": model_cluster(p.text("clusterName")),
            "metadata": p.json_object("metadata") or {},
        })
        await self.store.register(key, inst)
        return "ok"

    async def deregister(self, p: Params, _: Dialect) -> str:
        key = self._service_key(p)
        ip, port = self._address(p)
        await self.store.deregister(key, ip, port)  # Nacos answers ok for an unknown instance too
        return "ok"

    async def update(self, p: Params, _: Dialect) -> str:
        key = self._service_key(p)
        ip, port = self._address(p)
        changes = {
            "weight": p.number("weight", low=0, high=10000),
            "healthy": p.boolean("healthy"),
            "enabled": self._enabled(p, None),
            "cluster": None if p.text("clusterName") is None else model_cluster(p.text("clusterName")),
            "metadata": p.json_object("metadata"),
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        try:
            await self.store.update(key, ip, port, changes)
        except ValidationError as e:
            raise _param_error(e) from None
        return "ok"

    async def beat(self, p: Params, _: Dialect) -> dict[str, Any]:
        key = self._service_key(p)
        info = p.json_object("beat") or {}
        ip = p.text("ip") or _str_or_none(info.get("ip"))
        port_raw = p.text("port") or _str_or_none(info.get("port"))
        address = Params({"ip": ip or "", "port": port_raw or ""})
        ip, port = self._address(address)
        template = None
        if info:  # a full beat can re-register an instance the server forgot (Nacos does)
            template = self._instance({
                "host": ip, "port": port, "weight": info.get("weight", 1.0),
                "cluster": model_cluster(info.get("cluster") or p.text("clusterName")),
                "metadata": info.get("metadata") or {},
            })
        found = await self.store.beat(key, ip, port, template)
        return {"clientBeatInterval": self.beats.interval_ms, "code": 10200 if found else 20404,
                "lightBeatEnabled": True}

    async def list_instances(self, p: Params, dialect: Dialect) -> Any:
        key = self._service_key(p)
        healthy_only = p.boolean("healthyOnly", False)
        clusters = [c for c in (p.text("clusters") or "").split(",") if c]
        svc = self.store.service(key)
        if dialect.generation == 3:  # 3.x: data is the bare instance array
            return selected_hosts(key, svc, self.beats, clusters, bool(healthy_only))
        return service_info(key, svc, self.beats, name=grouped_name(key.group, key.name), clusters=clusters,
                            healthy_only=bool(healthy_only), ref_time=self.store.ref_time(key))

    async def list_services(self, p: Params, dialect: Dialect) -> dict[str, Any]:
        page_no = p.integer("pageNo", None if not dialect.unified else 1, required=not dialect.unified, low=1)
        page_size = p.integer("pageSize", None if not dialect.unified else DEFAULT_PAGE_SIZE,
                              required=not dialect.unified, low=1, high=MAX_PAGE_SIZE)
        assert page_no is not None and page_size is not None
        namespace = p.text("namespaceId", DEFAULT_NAMESPACE) or DEFAULT_NAMESPACE
        group = p.text("groupName", DEFAULT_GROUP) or DEFAULT_GROUP
        services = self.store.services(namespace, group)
        page = services[(page_no - 1) * page_size: page_no * page_size]
        if dialect.generation == 3:  # the 3.x admin API's page
            return {"totalCount": len(services), "pageNumber": page_no,
                    "pagesAvailable": -(-len(services) // page_size),
                    "pageItems": [{"name": s.name, "groupName": s.group,
                                   "clusterCount": len({i.cluster for i in s.instances}),
                                   "ipCount": len(s.instances),
                                   "healthyInstanceCount": sum(1 for i in s.instances if i.healthy),
                                   "triggerFlag": "false"} for s in page]}
        names = [s.name for s in page]
        return {"count": len(services), "services" if dialect.unified else "doms": names}


def _param_error(e: ValidationError) -> ParamError:
    """The first validation problem, named as the Nacos parameter that carried it."""
    err = e.errors()[0]
    field = field_path(err["loc"])
    param = _PARAM_OF_FIELD.get(field, field)
    return ParamError(param, f"Param '{param}' is invalid: {err['msg']}")


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
