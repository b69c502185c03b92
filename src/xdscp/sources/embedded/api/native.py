"""xdscp's own JSON API on the embedded registry (documented in docs/embedded-registry.md).

    GET    /v1/services                                   services with instance counts
    GET    /v1/services/{name}                            settings and instances
    PUT    /v1/services/{name}                            create, or replace the settings
    GET    /v1/services/{name}/instances
    POST   /v1/services/{name}/instances                  register (or replace) one instance
    PATCH  /v1/services/{name}/instances/{host}:{port}    change some fields
    DELETE /v1/services/{name}/instances/{host}:{port}    deregister
    PUT    /v1/services/{name}/instances/{host}:{port}/beat

``?namespace=`` and ``?group=`` pick the scope (default ``public`` / ``DEFAULT_GROUP``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from xdscp.addresses import split_host_port
from xdscp.documents import field_path
from xdscp.errors import XdscpError
from xdscp.model.naming import cluster_name
from xdscp.model.service import DEFAULT_GROUP, DEFAULT_NAMESPACE, Instance, Service, ServiceKey
from xdscp.sources.embedded.contract import InstanceNotFound, RegistryStore, StoreUnavailable


class _BadRequest(XdscpError):
    def __init__(self, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _errors_handled(fn: Endpoint) -> Endpoint:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except ValidationError as e:
            problems = [{"field": field_path(err["loc"]), "message": err["msg"]} for err in e.errors()]
            return web.json_response({"error": "invalid request", "problems": problems}, status=400)
        except _BadRequest as e:
            return web.json_response({"error": str(e), "problems": e.problems}, status=400)
        except InstanceNotFound as e:
            return web.json_response({"error": str(e)}, status=404)
        except StoreUnavailable as e:
            return web.json_response({"error": str(e)}, status=503)

    return endpoint


class RegistryApi:
    """The /v1/services routes onto an embedded registry store."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store

    def routes(self) -> list[web.RouteDef]:
        base = "/v1/services/{name}"
        inst = base + "/instances/{address}"
        return [
            web.get("/v1/services", _errors_handled(self.list_services)),
            web.get(base, _errors_handled(self.get_service)),
            web.put(base, _errors_handled(self.put_service)),
            web.get(base + "/instances", _errors_handled(self.list_instances)),
            web.post(base + "/instances", _errors_handled(self.register)),
            web.patch(inst, _errors_handled(self.update)),
            web.delete(inst, _errors_handled(self.deregister)),
            web.put(inst + "/beat", _errors_handled(self.beat)),
        ]

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def _key(request: web.Request) -> ServiceKey:
        namespace = request.query.get("namespace") or DEFAULT_NAMESPACE
        group = request.query.get("group") or DEFAULT_GROUP
        return Service(name=request.match_info["name"], namespace=namespace, group=group).key

    @staticmethod
    def _address(request: web.Request) -> tuple[str, int]:
        raw = request.match_info["address"]
        try:
            host, port = split_host_port(raw)
        except ValueError as e:
            raise _BadRequest(str(e)) from None
        return host, port

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _BadRequest("the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise _BadRequest("the body must be a JSON object")
        return body

    @staticmethod
    def _service_json(svc: Service) -> dict[str, Any]:
        doc = svc.model_dump(mode="json", exclude={"instances"})
        doc["cluster"] = cluster_name(svc.key)
        doc["instances"] = [i.model_dump(mode="json") for i in svc.instances]
        return doc

    # -- endpoints --------------------------------------------------------------------
    async def list_services(self, request: web.Request) -> web.Response:
        namespace = request.query.get("namespace")
        group = request.query.get("group")
        out = [{"namespace": s.namespace, "group": s.group, "name": s.name, "cluster": cluster_name(s.key),
                "instances": len(s.instances), "healthy": sum(1 for i in s.instances if i.healthy)}
               for s in self.store.services(namespace, group)]
        return web.json_response({"services": out})

    async def get_service(self, request: web.Request) -> web.Response:
        svc = self.store.service(self._key(request))
        if svc is None:
            return web.json_response({"error": "no such service"}, status=404)
        return web.json_response(self._service_json(svc))

    async def put_service(self, request: web.Request) -> web.Response:
        key = self._key(request)
        body = await self._body(request)
        if "instances" in body:
            raise _BadRequest("instances are registered one by one, under /instances")
        spec = Service.model_validate({**body, "name": key.name, "namespace": key.namespace, "group": key.group})
        return web.json_response(self._service_json(await self.store.upsert_service(spec)))

    async def list_instances(self, request: web.Request) -> web.Response:
        svc = self.store.service(self._key(request))
        instances = [i.model_dump(mode="json") for i in svc.instances] if svc is not None else []
        return web.json_response({"instances": instances})

    async def register(self, request: web.Request) -> web.Response:
        key = self._key(request)
        inst = Instance.model_validate(await self._body(request))
        await self.store.register(key, inst)
        return web.json_response({"instance": inst.model_dump(mode="json")}, status=201)

    async def update(self, request: web.Request) -> web.Response:
        key = self._key(request)
        host, port = self._address(request)
        inst = await self.store.update(key, host, port, await self._body(request))
        return web.json_response({"instance": inst.model_dump(mode="json")})

    async def deregister(self, request: web.Request) -> web.Response:
        key = self._key(request)
        host, port = self._address(request)
        if not await self.store.deregister(key, host, port):
            raise InstanceNotFound(key, host, port)
        return web.json_response({"deregistered": f"{host}:{port}"})

    async def beat(self, request: web.Request) -> web.Response:
        key = self._key(request)
        host, port = self._address(request)
        if not await self.store.beat(key, host, port):
            raise InstanceNotFound(key, host, port)
        return web.json_response({"ok": True})
