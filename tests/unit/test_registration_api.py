"""The registration APIs (Nacos v1/v2/v3 and native) over real HTTP to the admin server."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from xdscp.model.service import ServiceKey
from xdscp.sources.embedded.database import RegistryDatabase
from xdscp.sources.embedded.store import EmbeddedStore

from plane import Plane

ECHO = ServiceKey("public", "DEFAULT_GROUP", "echo")
V1, V2, V3 = "/nacos/v1/ns", "/nacos/v2/ns", "/nacos/v3/client/ns"
V3_ADMIN = "/nacos/v3/admin/ns"
# What Nacos 3 serves: the client API registers, renews, deregisters and lists one
# service's instances; the service list is the admin API's.
V3_PATHS = {("POST", "/instance"): V3, ("DELETE", "/instance"): V3, ("GET", "/instance/list"): V3,
            ("GET", "/service/list"): V3_ADMIN}
GOOD = {"serviceName": "echo", "ip": "127.0.0.1", "port": "9001"}


def base(plane: Plane) -> str:
    return f"http://127.0.0.1:{plane.cp.admin_port}"


def store_of(plane: Plane) -> EmbeddedStore:
    return plane.cp.sources[0].store  # type: ignore[attr-defined]


def snapshot(plane: Plane) -> Any:
    return [s.model_dump() for s in store_of(plane).services()]


async def call(plane: Plane, method: str, path: str, **params: str) -> tuple[int, Any]:
    return await plane.admin(method, path, params=params)


async def test_register_list_beat_update_deregister_in_every_dialect(embedded: Plane) -> None:
    assert await call(embedded, "POST", f"{V1}/instance", **GOOD) == (200, "ok")
    assert await call(embedded, "POST", f"{V2}/instance", **{**GOOD, "port": "9002", "weight": "2.5"}) == (
        200, {"code": 0, "message": "success", "data": "ok"})
    assert (await call(embedded, "POST", f"{V3}/instance", **{**GOOD, "port": "9003", "ephemeral": "false"}))[0] == 200

    status, listing = await call(embedded, "GET", f"{V1}/instance/list", serviceName="echo")
    assert status == 200 and listing["name"] == "DEFAULT_GROUP@@echo"
    assert [(h["port"], h["weight"], h["ephemeral"]) for h in listing["hosts"]] == [
        (9001, 1.0, True), (9002, 2.5, True), (9003, 1.0, False)]
    status, wrapped = await call(embedded, "GET", f"{V2}/instance/list", serviceName="echo")
    assert wrapped["code"] == 0 and wrapped["data"]["hosts"] == listing["hosts"]

    assert (await call(embedded, "PUT", f"{V1}/instance", **GOOD, healthy="false"))[0] == 200
    status, healthy_only = await call(embedded, "GET", f"{V1}/instance/list", serviceName="echo", healthyOnly="true")
    assert [h["port"] for h in healthy_only["hosts"]] == [9002, 9003]

    status, beat = await call(embedded, "PUT", f"{V1}/instance/beat", serviceName="DEFAULT_GROUP@@echo",
                              beat='{"ip": "127.0.0.1", "port": 9002}')
    assert beat["code"] == 10200
    status, beat = await call(embedded, "PUT", f"{V2}/instance/beat", serviceName="echo", ip="10.9.9.9", port="1")
    assert beat["data"]["code"] == 20404  # unknown, and no beat info to re-register from

    assert await call(embedded, "GET", f"{V1}/service/list", pageNo="1", pageSize="10") == (
        200, {"count": 1, "doms": ["echo"]})
    assert (await call(embedded, "GET", f"{V2}/service/list"))[1]["data"] == {"count": 1, "services": ["echo"]}

    for port in ("9001", "9002", "9003"):
        assert (await call(embedded, "DELETE", f"{V1}/instance", **{**GOOD, "port": port}))[0] == 200
    assert store_of(embedded).service(ECHO).instances == ()


async def test_the_3x_client_and_admin_api_answer_as_nacos_3(embedded: Plane) -> None:
    assert (await call(embedded, "POST", f"{V3}/instance", **GOOD, metadata='{"version": "v2"}'))[1]["data"] == "ok"
    status, body = await call(embedded, "GET", f"{V3}/instance/list", serviceName="echo")
    assert status == 200 and body["code"] == 0 and isinstance(body["data"], list)  # the bare instance array
    assert [(h["ip"], h["port"], h["metadata"]) for h in body["data"]] == [("127.0.0.1", 9001, {"version": "v2"})]
    # Renewal is the register call with heartBeat=true; an unknown instance gets 21003.
    assert (await call(embedded, "POST", f"{V3}/instance", **GOOD, heartBeat="true"))[1]["data"] == "ok"
    status, body = await call(embedded, "POST", f"{V3}/instance", **{**GOOD, "port": "9009"}, heartBeat="true")
    assert body["code"] == 21003 and len(store_of(embedded).service(ECHO).instances) == 1
    status, body = await call(embedded, "GET", f"{V3_ADMIN}/service/list", pageNo="1", pageSize="10")
    page = body["data"]
    assert page["totalCount"] == 1 and page["pageItems"][0]["name"] == "echo"
    assert page["pageItems"][0]["groupName"] == "DEFAULT_GROUP" and page["pageItems"][0]["ipCount"] == 1
    # Nacos 3's client API has no service list, no PUT and no beat path.
    assert (await call(embedded, "GET", f"{V3}/service/list"))[0] == 404
    assert (await call(embedded, "PUT", f"{V3}/instance", **GOOD))[0] == 405


def _bad_requests() -> list[tuple[str, str, dict[str, str], str, int]]:
    """(method, path suffix, params, the parameter named in the error, v2 code)."""
    rows = []
    for method in ("POST", "PUT", "DELETE"):
        for missing in ("serviceName", "ip", "port"):
            rows.append((method, "/instance", {k: v for k, v in GOOD.items() if k != missing}, missing, 10000))
        rows.append((method, "/instance", {**GOOD, "port": "eighty"}, "port", 20002))
        rows.append((method, "/instance", {**GOOD, "port": "70000"}, "port", 20002))
        rows.append((method, "/instance", {**GOOD, "serviceName": "no spaces"}, "serviceName", 21000))
    rows += [
        ("POST", "/instance", {**GOOD, "weight": "heavy"}, "weight", 20002),
        ("POST", "/instance", {**GOOD, "weight": "-1"}, "weight", 20002),
        ("POST", "/instance", {**GOOD, "weight": "nan"}, "weight", 20002),
        ("POST", "/instance", {**GOOD, "healthy": "maybe"}, "healthy", 20002),
        ("POST", "/instance", {**GOOD, "enabled": "2"}, "enabled", 20002),
        ("POST", "/instance", {**GOOD, "ephemeral": "yesplease"}, "ephemeral", 20002),
        ("POST", "/instance", {**GOOD, "ip": "not-an-ip"}, "ip", 20002),
        ("POST", "/instance", {**GOOD, "metadata": "[1, 2]"}, "metadata", 20002),
        ("POST", "/instance", {**GOOD, "metadata": "{not json"}, "metadata", 20002),
        ("POST", "/instance", {**GOOD, "namespaceId": "bad ns"}, "namespaceId", 20002),
        ("PUT", "/instance/beat", {"serviceName": "echo"}, "ip", 10000),
        ("PUT", "/instance/beat", {"serviceName": "echo", "beat": "{\"ip\": \"127.0.0.1\", \"port\": 0}"}, "port",
         20002),
        ("GET", "/instance/list", {}, "serviceName", 10000),
        ("GET", "/instance/list", {"serviceName": "echo", "healthyOnly": "sometimes"}, "healthyOnly", 20002),
        ("GET", "/service/list", {"pageNo": "0", "pageSize": "10"}, "pageNo", 20002),
        ("GET", "/service/list", {"pageNo": "1", "pageSize": "x"}, "pageSize", 20002),
    ]
    return rows


@pytest.mark.parametrize(("method", "path", "params", "param", "code"), _bad_requests())
async def test_bad_parameters_get_400_and_change_nothing(embedded: Plane, method: str, path: str,
                                                         params: dict[str, str], param: str, code: int) -> None:
    await call(embedded, "POST", f"{V1}/instance", **{**GOOD, "port": "9000"})
    before = snapshot(embedded)
    status, body = await call(embedded, method, V1 + path, **params)
    assert status == 400 and isinstance(body, str) and body.startswith("caused: ") and f"'{param}'" in body
    for prefix in (V2, V3_PATHS.get((method, path))):
        if prefix is None:
            continue  # not a Nacos 3 path
        status, body = await call(embedded, method, prefix + path, **params)
        assert status == 400 and body["code"] == code and f"'{param}'" in body["message"] and body["data"] is None
    assert snapshot(embedded) == before


async def test_v1_service_list_requires_paging_like_nacos(embedded: Plane) -> None:
    status, body = await call(embedded, "GET", f"{V1}/service/list")
    assert status == 400 and "'pageNo' is required" in body


async def test_native_api(embedded: Plane) -> None:
    async with aiohttp.ClientSession(base_url=base(embedded)) as http:
        r = await http.put("/v1/services/echo", json={"lb_policy": "RANDOM", "protect_threshold": 0.5,
                                                       "locality_failover": True})
        assert r.status == 200 and (await r.json())["lb_policy"] == "RANDOM"
        assert (await r.json())["locality_failover"] is True
        r = await http.post("/v1/services/echo/instances", json={"host": "127.0.0.1", "port": 9001, "zone": "a"})
        assert r.status == 201
        r = await http.patch("/v1/services/echo/instances/127.0.0.1:9001", json={"weight": 3})
        assert (await r.json())["instance"]["weight"] == 3
        assert (await (await http.put("/v1/services/echo/instances/127.0.0.1:9001/beat")).json()) == {"ok": True}
        listing = await (await http.get("/v1/services")).json()
        assert listing["services"] == [{"namespace": "public", "group": "DEFAULT_GROUP", "name": "echo",
                                        "cluster": "echo", "instances": 1, "healthy": 1}]
        r = await http.post("/v1/services/echo/instances", json={"host": "example.com", "port": 0})
        body = await r.json()
        assert r.status == 400 and {p["field"] for p in body["problems"]} == {"host", "port"}
        r = await http.post("/v1/services/echo/instances", data=b"{oops", headers={"Content-Type": "application/json"})
        assert r.status == 400 and "JSON object" in (await r.json())["error"]
        r = await http.put("/v1/services/echo", json={"lb_policy": "FASTEST"})
        assert r.status == 400 and (await r.json())["problems"][0]["field"] == "lb_policy"
        assert (await http.delete("/v1/services/echo/instances/127.0.0.1:9001")).status == 200
        assert (await http.delete("/v1/services/echo/instances/127.0.0.1:9001")).status == 404
        assert (await http.get("/v1/services/nosuch")).status == 404


async def test_200_concurrent_registrations_from_8_clients_all_land(embedded: Plane, tmp_path) -> None:
    async def client(c: int) -> None:
        async with aiohttp.ClientSession() as http:
            async def one(i: int) -> None:
                params = {"serviceName": f"svc{c}", "ip": f"10.0.{c}.{i + 1}", "port": "8080",
                          "ephemeral": "false" if i % 2 else "true"}
                async with http.post(base(embedded) + f"{V1}/instance", params=params) as resp:
                    assert resp.status == 200 and await resp.text() == "ok"
            await asyncio.gather(*(one(i) for i in range(25)))

    await asyncio.gather(*(client(c) for c in range(8)))
    services = store_of(embedded).services()
    assert sum(len(s.instances) for s in services) == 200
    # Every persistent one is on disk already: a fresh store reading the file finds them.
    reread = EmbeddedStore("check", RegistryDatabase(tmp_path / "registry.db"))
    persistent = sum(1 for c in range(8) for i in range(25) if i % 2)
    assert sum(len(s.instances) for s in reread.services()) == persistent == 96
