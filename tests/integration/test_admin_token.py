"""With admin.write_token, the registration APIs change nothing without the token; reads stay open."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from xdscp.model.service import ServiceKey

from cli import xdscp_cli
from plane import Plane, embedded_source, running_plane, start_plane

TOKEN = "admin-token-0123456789"
ECHO = {"serviceName": "echo", "ip": "127.0.0.1", "port": "9001"}


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Plane]:
    async with running_plane(tmp_path, None, sources=[embedded_source(tmp_path)],
                             admin={"write_token": TOKEN}) as plane:
        yield plane


async def call(plane: Plane, method: str, path: str, headers: dict[str, str] | None = None,
               **params: str) -> tuple[int, str]:
    status, body = await plane.admin(method, path, params=params, headers=headers)
    return status, body if isinstance(body, str) else json.dumps(body)


def instances(plane: Plane) -> int:
    svc = plane.cp.sources[0].store.service(ServiceKey("public", "DEFAULT_GROUP", "echo"))  # type: ignore[attr-defined]
    return 0 if svc is None else len(svc.instances)


async def test_writes_need_the_token_reads_do_not(guarded: Plane) -> None:
    status, body = await call(guarded, "POST", "/nacos/v1/ns/instance", **ECHO)
    assert status == 401 and "write token" in body and instances(guarded) == 0
    status, _ = await call(guarded, "POST", "/nacos/v1/ns/instance", {"Authorization": "Bearer wrong-token-000000"},
                           **ECHO)
    assert status == 401 and instances(guarded) == 0
    status, _ = await call(guarded, "POST", "/nacos/v1/ns/instance", {"Authorization": f"Bearer {TOKEN}"}, **ECHO)
    assert status == 200 and instances(guarded) == 1
    status, _ = await call(guarded, "POST", "/nacos/v2/ns/instance", accessToken=TOKEN, **{**ECHO, "port": "9002"})
    assert status == 200 and instances(guarded) == 2  # Nacos clients send accessToken
    status, _ = await call(guarded, "GET", "/nacos/v1/ns/instance/list", serviceName="echo")
    assert status == 200
    status, _ = await call(guarded, "DELETE", "/v1/services/echo/instances/127.0.0.1:9001")
    assert status == 401 and instances(guarded) == 2
    status, _ = await call(guarded, "GET", "/healthz")
    assert status == 200


async def test_the_read_only_address_serves_reads_and_refuses_writes(tmp_path: Path) -> None:
    async with running_plane(tmp_path, None, sources=[embedded_source(tmp_path)],
                              admin={"read_only_address": "127.0.0.1:0"}) as plane:
        ro = f"http://127.0.0.1:{plane.cp.admin_read_only_port}"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{ro}/nacos/v1/ns/instance", params=ECHO) as r:
                assert r.status == 405 and instances(plane) == 0
            async with http.get(f"{ro}/nacos/v1/ns/instance/list", params={"serviceName": "echo"}) as r:
                assert r.status == 200
            async with http.get(f"{ro}/debug/config_dump") as r:
                assert r.status == 200
            async with http.post(f"{ro}/v3/discovery:clusters", json={"node": {"id": "poller"}}) as r:
                assert r.status == 200  # REST-JSON polls read
        status, _ = await call(plane, "POST", "/nacos/v1/ns/instance", **ECHO)  # the private address writes
        assert status == 200 and instances(plane) == 1


async def test_the_admin_api_over_https(tmp_path: Path) -> None:
    import ssl

    from xdscp.errors import ConfigError

    from tls_certs import make_ca, make_cert

    ca = make_ca(tmp_path / "certs", "ca")
    server = make_cert(ca, tmp_path / "certs", "admin", "DNS:xdscp.local,IP:127.0.0.1", server=True)
    async with running_plane(tmp_path, None, sources=[embedded_source(tmp_path)], admin={
        "tls": {"cert_file": server.cert, "key_file": server.key}, "write_token": TOKEN}) as plane:
        trust = ssl.create_default_context(cafile=str(ca.cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{plane.cp.admin_port}/healthz", ssl=trust) as r:
                assert r.status == 200
            async with http.post(f"https://127.0.0.1:{plane.cp.admin_port}/nacos/v1/ns/instance", ssl=trust,
                                 params=ECHO, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200 and instances(plane) == 1
        code, out = await xdscp_cli("status", "--admin", f"https://127.0.0.1:{plane.cp.admin_port}",
                                    "--ca-file", str(ca.cert))
        assert code == 0 and "no xDS streams connected" in out, out
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):  # plain HTTP is not spoken there
                async with http.get(f"http://127.0.0.1:{plane.cp.admin_port}/healthz") as r:
                    await r.read()
    with pytest.raises(ConfigError, match="admin TLS files"):
        await start_plane(tmp_path / "bad", None, admin={"tls": {"cert_file": server.cert, "key_file": ca.cert}})
