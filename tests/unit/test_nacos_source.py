"""``kind: nacos``. No Nacos server can be installed here, so the source is tested against
xdscp's own Nacos-compatible API (v1, v2 and the v3 client API, served by a second
control plane's embedded registry), and against a small server answering with the
response shapes of the Nacos Open API documentation (login, service list, instance
list with the 1.x ``valid`` field)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from xdscp.config import NacosSourceConfig
from xdscp.model.service import Instance, ServiceKey

from plane import Plane, embedded_source, running_plane
from upstreams import serving
from waiting import eventually


@pytest.fixture
async def nacos(tmp_path: Path) -> AsyncIterator[Plane]:
    """A control plane whose embedded registry stands in for the Nacos server."""
    (tmp_path / "nacos").mkdir()
    async with running_plane(tmp_path / "nacos", None, published=False,
                             sources=[embedded_source(tmp_path / "nacos")]) as plane:
        store = plane.cp.sources[0].store  # type: ignore[attr-defined]
        echo = ServiceKey("public", "DEFAULT_GROUP", "echo")
        await store.register(echo, Instance(host="127.0.0.1", port=9001))
        await store.register(echo, Instance(host="127.0.0.1", port=9002, weight=3))
        await store.register(ServiceKey("public", "payments", "api"), Instance(host="127.0.0.1", port=9101))
        yield plane


@asynccontextmanager
async def follower(tmp_path: Path, nacos: Plane, api: str, **settings: object) -> AsyncIterator[Plane]:
    (tmp_path / "follower").mkdir(exist_ok=True)
    async with running_plane(tmp_path / "follower", None, sources=[NacosSourceConfig(
            kind="nacos", name="nacos", servers=[f"http://127.0.0.1:{nacos.cp.admin_port}"], api_version=api,
            interval=0.05, timeout=2.0, **settings)]) as plane:
        yield plane


@pytest.mark.parametrize("api", ["v1", "v2", "v3"])
async def test_instances_services_and_removals_are_followed(tmp_path: Path, nacos: Plane, api: str) -> None:
    async with follower(tmp_path, nacos, api, groups=["DEFAULT_GROUP", "payments"]) as plane:
        store = nacos.cp.sources[0].store  # type: ignore[attr-defined]
        assert plane.ports("echo") == [9001, 9002]
        assert plane.ports("api", group="payments") == [9101]
        echo = plane.cp.registry.services[ServiceKey("public", "DEFAULT_GROUP", "echo")]
        assert [i.weight for i in echo.instances] == [1.0, 3.0]
        await store.register(ServiceKey("public", "DEFAULT_GROUP", "fresh"), Instance(host="127.0.0.1", port=9301))
        await eventually(lambda: plane.ports("fresh") == [9301], what="a new service")
        await store.update(ServiceKey("public", "DEFAULT_GROUP", "echo"), "127.0.0.1", 9002, {"healthy": False})
        await eventually(lambda: not plane.cp.registry.services[
            ServiceKey("public", "DEFAULT_GROUP", "echo")].instances[1].healthy, what="health followed")
        await store.deregister(ServiceKey("public", "DEFAULT_GROUP", "echo"), "127.0.0.1", 9001)
        await eventually(lambda: plane.ports("echo") == [9002], what="deregistration followed")


async def test_an_unreachable_nacos_keeps_the_last_view(tmp_path: Path, nacos: Plane) -> None:
    async with follower(tmp_path, nacos, "v2") as plane:
        await nacos.cp.stop(0)
        source = plane.cp.sources[0]
        await eventually(lambda: source.last_error is not None, what="loss noticed")
        assert "cannot reach" in (source.last_error or "")
        assert plane.ports("echo") == [9001, 9002]


@pytest.fixture
async def documented_nacos() -> AsyncIterator[tuple[str, list[str]]]:
    """Answers as the Nacos Open API documentation shows, and only with a valid token.
    The yielded list is the service list it answers; tests may change it."""
    token = "eyJhbGciOiJIUzI1NiJ9.test"
    doms = ["nacos.test.1"]

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("username") != "nacos" or form.get("password") != "secret":
            return web.Response(status=403, text="unknown user!")
        return web.json_response({"accessToken": token, "tokenTtl": 18000, "globalAdmin": True})

    def authorized(request: web.Request) -> bool:
        return request.query.get("accessToken") == token

    async def service_list(request: web.Request) -> web.Response:
        if not authorized(request):
            return web.Response(status=403, text="user not found!")
        return web.json_response({"count": len(doms), "doms": list(doms)})

    async def instance_list(request: web.Request) -> web.Response:
        if not authorized(request):
            return web.Response(status=403, text="user not found!")
        return web.json_response({
            "dom": "nacos.test.1", "cacheMillis": 1000, "useSpecifiedURL": False,
            "hosts": [
                {"valid": True, "marked": False, "instanceId": "10.10.10.10-8888-DEFAULT-nacos.test.1",
                 "port": 8888, "ip": "10.10.10.10", "weight": 1.0, "metadata": {}},
                {"valid": False, "marked": False, "instanceId": "10.10.10.11-8888-DEFAULT-nacos.test.1",
                 "port": 8888, "ip": "10.10.10.11", "weight": 2.0, "metadata": {"version": "v2"}},
                {"valid": True, "instanceId": "bad", "port": 8888, "ip": "not-an-ip", "weight": 1.0},
            ],
            "checksum": "3bbcf6dd1175203a8afdade0e77a27cd1528787794594", "lastRefTime": 1528787794594,
            "env": "", "clusters": ""})

    app = web.Application()
    app.router.add_post("/nacos/v1/auth/login", login)
    app.router.add_get("/nacos/v1/ns/service/list", service_list)
    app.router.add_get("/nacos/v1/ns/instance/list", instance_list)
    async with serving(app) as url:
        yield url, doms


async def test_documented_v1_answers_with_login(tmp_path: Path, documented_nacos: tuple[str, list[str]]) -> None:
    url, doms = documented_nacos
    async with running_plane(tmp_path, None, sources=[NacosSourceConfig(
        kind="nacos", name="nacos", servers=[url], username="nacos", password="secret", interval=0.05)]) as plane:
        svc = plane.cp.registry.services[ServiceKey("public", "DEFAULT_GROUP", "nacos.test.1")]
        assert [(i.host, i.healthy, i.weight) for i in svc.instances] == [
            ("10.10.10.10", True, 1.0), ("10.10.10.11", False, 2.0)]  # the bad IP is dropped alone
        assert svc.instances[1].metadata == {"version": "v2"}
        doms.clear()  # the service is deleted in Nacos
        await eventually(lambda: not plane.cp.registry.services, what="service removed")


async def test_a_wrong_password_is_an_error_not_an_empty_registry(
        tmp_path: Path, documented_nacos: tuple[str, list[str]]) -> None:
    async with running_plane(tmp_path, None, sources=[NacosSourceConfig(
        kind="nacos", name="nacos", servers=[documented_nacos[0]], username="nacos", password="wrong",
        interval=0.05)], published=False) as plane:
        source = plane.cp.sources[0]
        await eventually(lambda: source.last_error is not None, what="login failure")
        assert "login" in (source.last_error or "") and plane.cp.publisher.published == 0


@pytest.fixture
async def upgradable_nacos() -> AsyncIterator[tuple[str, dict[str, bool]]]:
    """A Nacos answering as the 2.x v1 API documents until ``state["v1"]`` is set False, then
    only as 3.x does (v1 off): the admin API's service page and the client API's instance
    array, shaped as in Nacos 3's Open API documentation, with login on the 3.x path."""
    state = {"v1": True}
    token = "eyJhbGciOiJIUzI1NiJ9.v3"

    def v1_on(handler: Any) -> Any:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not state["v1"]:
                return web.Response(status=404, text="Not Found")
            return await handler(request)
        return guarded

    async def v1_services(request: web.Request) -> web.Response:
        return web.json_response({"count": 1, "doms": ["test1"]})

    async def v1_instances(request: web.Request) -> web.Response:
        return web.json_response({"dom": "test1", "hosts": [
            {"valid": True, "ip": "10.0.0.1", "port": 3306, "weight": 1.0, "metadata": {}}]})

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        if (form.get("username"), form.get("password")) != ("nacos", "secret"):
            return web.Response(status=403, text="unknown user!")
        return web.json_response({"accessToken": token, "tokenTtl": 18000, "globalAdmin": True})

    async def v3_services(request: web.Request) -> web.Response:
        if request.query.get("accessToken") != token:
            return web.json_response({"code": 403, "message": "user not found!", "data": None}, status=403)
        return web.json_response({"code": 0, "message": "success", "data": {
            "pageItems": [{"clusterCount": 1, "groupName": "DEFAULT_GROUP", "healthyInstanceCount": 1,
                           "ipCount": 1, "name": "test1", "triggerFlag": "false"}],
            "pageNumber": 1, "pagesAvailable": 1, "totalCount": 1}})

    async def v3_instances(request: web.Request) -> web.Response:
        if request.query.get("accessToken") != token:
            return web.json_response({"code": 403, "message": "user not found!", "data": None}, status=403)
        return web.json_response({"code": 0, "message": "success", "data": [
            {"ip": "127.0.0.1", "port": 3306, "weight": 1.0, "healthy": True, "enabled": True, "ephemeral": True,
             "clusterName": "DEFAULT", "serviceName": "DEFAULT_GROUP@@test1", "metadata": {},
             "ipDeleteTimeout": 30000, "instanceIdGenerator": "simple", "instanceHeartBeatInterval": 5000,
             "instanceHeartBeatTimeOut": 15000}]})

    app = web.Application()
    app.router.add_post("/nacos/v1/auth/login", v1_on(login))
    app.router.add_get("/nacos/v1/ns/service/list", v1_on(v1_services))
    app.router.add_get("/nacos/v1/ns/instance/list", v1_on(v1_instances))
    app.router.add_post("/nacos/v3/auth/user/login", login)
    app.router.add_get("/nacos/v3/admin/ns/service/list", v3_services)
    app.router.add_get("/nacos/v3/client/ns/instance/list", v3_instances)
    async with serving(app) as url:
        yield url, state


def hosts_of(plane: Plane, name: str) -> list[str]:
    svc = plane.cp.registry.services.get(ServiceKey("public", "DEFAULT_GROUP", name))
    return [] if svc is None else [i.address for i in svc.instances]


async def test_auto_detects_the_api_and_follows_an_upgrade_to_3x(
        tmp_path: Path, upgradable_nacos: tuple[str, dict[str, bool]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xdscp.sources.nacos")
    url, state = upgradable_nacos
    async with running_plane(tmp_path, None, sources=[NacosSourceConfig(
        kind="nacos", name="nacos", servers=[url], username="nacos", password="secret", interval=0.05)],
                                 published=False) as plane:
        await eventually(lambda: hosts_of(plane, "test1") == ["10.0.0.1:3306"], what="read over v1")
        state["v1"] = False  # upgraded to 3.x, where v1 is off
        await eventually(lambda: hosts_of(plane, "test1") == ["127.0.0.1:3306"], what="read over v3")
        detected = [r.xdscp_fields["api"] for r in caplog.records  # type: ignore[attr-defined]
                    if r.getMessage() == "source.api_detected"]
        assert detected[0] == "v1" and detected[-1] == "v3", detected


async def test_auto_against_xdscp_own_nacos_api_picks_v1(tmp_path: Path, nacos: Plane) -> None:
    async with follower(tmp_path, nacos, "auto") as plane:
        assert plane.ports("echo") == [9001, 9002]
        assert plane.cp.sources[0].api == "v1"  # type: ignore[attr-defined]
