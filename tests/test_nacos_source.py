"""``kind: nacos``. No Nacos server can be installed here, so the source is tested against
xdscp's own Nacos-compatible API (v1, v2 and the v3 client API, served by a second
control plane's embedded registry), and against a small server answering with the
response shapes of the Nacos Open API documentation (login, service list, instance
list with the 1.x ``valid`` field)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from xdscp.config import NacosSourceConfig
from xdscp.model.service import Instance, ServiceKey

from conftest import Plane, embedded_source, eventually, start_plane


async def _async(value: object) -> object:
    return value


def ports(plane: Plane, name: str, group: str = "DEFAULT_GROUP", namespace: str = "public") -> list[int]:
    svc = plane.cp.registry.services.get(ServiceKey(namespace, group, name))
    return [] if svc is None else sorted(i.port for i in svc.instances)


@pytest.fixture
async def nacos(tmp_path: Path) -> AsyncIterator[Plane]:
    """A control plane whose embedded registry stands in for the Nacos server."""
    (tmp_path / "nacos").mkdir()
    plane = await start_plane(tmp_path / "nacos", None, sources=[embedded_source(tmp_path / "nacos")])
    store = plane.cp.sources[0].store  # type: ignore[attr-defined]
    store.register(ServiceKey("public", "DEFAULT_GROUP", "echo"), Instance(host="127.0.0.1", port=9001))
    store.register(ServiceKey("public", "DEFAULT_GROUP", "echo"), Instance(host="127.0.0.1", port=9002, weight=3))
    store.register(ServiceKey("public", "payments", "api"), Instance(host="127.0.0.1", port=9101))
    try:
        yield plane
    finally:
        await plane.cp.stop(0)


async def follower(tmp_path: Path, nacos: Plane, api: str, **settings: object) -> Plane:
    (tmp_path / "follower").mkdir(exist_ok=True)
    plane = await start_plane(tmp_path / "follower", None, sources=[NacosSourceConfig(
        kind="nacos", name="nacos", servers=[f"http://127.0.0.1:{nacos.cp.admin_port}"], api_version=api,
        interval=0.05, timeout=2.0, **settings)])
    await plane.wait_published(1)
    return plane


@pytest.mark.parametrize("api", ["v1", "v2", "v3"])
async def test_instances_services_and_removals_are_followed(tmp_path: Path, nacos: Plane, api: str) -> None:
    plane = await follower(tmp_path, nacos, api, groups=["DEFAULT_GROUP", "payments"])
    store = nacos.cp.sources[0].store  # type: ignore[attr-defined]
    try:
        assert ports(plane, "echo") == [9001, 9002]
        assert ports(plane, "api", group="payments") == [9101]
        echo = plane.cp.registry.services[ServiceKey("public", "DEFAULT_GROUP", "echo")]
        assert [i.weight for i in echo.instances] == [1.0, 3.0]
        store.register(ServiceKey("public", "DEFAULT_GROUP", "fresh"), Instance(host="127.0.0.1", port=9301))
        await eventually(lambda: _async(ports(plane, "fresh") == [9301]), what="a new service")
        store.update(ServiceKey("public", "DEFAULT_GROUP", "echo"), "127.0.0.1", 9002, {"healthy": False})
        await eventually(lambda: _async(not plane.cp.registry.services[
            ServiceKey("public", "DEFAULT_GROUP", "echo")].instances[1].healthy), what="health followed")
        store.deregister(ServiceKey("public", "DEFAULT_GROUP", "echo"), "127.0.0.1", 9001)
        await eventually(lambda: _async(ports(plane, "echo") == [9002]), what="deregistration followed")
    finally:
        await plane.cp.stop(0)


async def test_an_unreachable_nacos_keeps_the_last_view(tmp_path: Path, nacos: Plane) -> None:
    plane = await follower(tmp_path, nacos, "v2")
    try:
        await nacos.cp.stop(0)
        source = plane.cp.sources[0]
        await eventually(lambda: _async(source.last_error is not None), what="loss noticed")
        assert "cannot reach" in (source.last_error or "")
        assert ports(plane, "echo") == [9001, 9002]
    finally:
        await plane.cp.stop(0)


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
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", doms
    finally:
        await runner.cleanup()


async def test_documented_v1_answers_with_login(tmp_path: Path, documented_nacos: tuple[str, list[str]]) -> None:
    url, doms = documented_nacos
    plane = await start_plane(tmp_path, None, sources=[NacosSourceConfig(
        kind="nacos", name="nacos", servers=[url], username="nacos", password="secret", interval=0.05)])
    try:
        await plane.wait_published(1)
        svc = plane.cp.registry.services[ServiceKey("public", "DEFAULT_GROUP", "nacos.test.1")]
        assert [(i.host, i.healthy, i.weight) for i in svc.instances] == [
            ("10.10.10.10", True, 1.0), ("10.10.10.11", False, 2.0)]  # the bad IP is dropped alone
        assert svc.instances[1].metadata == {"version": "v2"}
        doms.clear()  # the service is deleted in Nacos
        await eventually(lambda: _async(not plane.cp.registry.services), what="service removed")
    finally:
        await plane.cp.stop(0)


async def test_a_wrong_password_is_an_error_not_an_empty_registry(
        tmp_path: Path, documented_nacos: tuple[str, list[str]]) -> None:
    plane = await start_plane(tmp_path, None, sources=[NacosSourceConfig(
        kind="nacos", name="nacos", servers=[documented_nacos[0]], username="nacos", password="wrong",
        interval=0.05)])
    try:
        source = plane.cp.sources[0]
        await eventually(lambda: _async(source.last_error is not None), what="login failure")
        assert "login" in (source.last_error or "") and plane.cp.publisher.published == 0
    finally:
        await plane.cp.stop(0)
