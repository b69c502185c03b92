"""Nacos auth as SDKs use it: users in the config log in with username and password and
send the token they get back, over HTTP and in the gRPC headers. Real SDKs (3.2 and Rust
over gRPC, 1.0 over HTTP) are configured as a production Nacos client is."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import nacos
import pytest

from xdscp.credentials import Credentials, User, hash_password
from xdscp.local.ports import free_port_pair
from xdscp.nacos_protocol import GRPC_PORT_OFFSET

from nacos_sdk_venv import PYTHON_3, RUST, Sdk, start_sdk
from plane import Plane, embedded_source, running_plane
from waiting import eventually

logging.getLogger("nacos").setLevel(logging.WARNING)

USERS = [{"username": "app", "password_hash": hash_password("app-pass", 1000), "write": True},
         {"username": "viewer", "password_hash": hash_password("view-pass", 1000)}]


async def http(plane: Plane, method: str, path: str, **params: str) -> tuple[int, Any]:
    """A form-encoded call, as Nacos' HTTP clients make them."""
    return await plane.admin(method, path, form=params)


@pytest.fixture
async def plane(tmp_path: Path) -> Any:
    port = free_port_pair(GRPC_PORT_OFFSET)
    async with running_plane(tmp_path, None, sources=[embedded_source(tmp_path)],
                          admin={"address": f"127.0.0.1:{port}", "users": USERS}, published=False) as p:
        yield p


async def test_login_answers_a_token_as_nacos_and_refuses_a_wrong_password(plane: Plane) -> None:
    for path in ("/nacos/v1/auth/login", "/nacos/v1/auth/users/login", "/nacos/v3/auth/user/login"):
        status, body = await http(plane, "POST", path, username="app", password="app-pass")
        assert status == 200 and body["accessToken"] and body["tokenTtl"] == 18000 and body["username"] == "app"
    status, body = await http(plane, "POST", "/nacos/v1/auth/login", username="app", password="wrong")
    assert status == 403 and body["data"] == "User not found! Please check user exist or password is right!"
    status, body = await http(plane, "POST", "/nacos/v1/auth/login", username="nobody", password="app-pass")
    assert status == 403
    # the token writes; without it neither writes nor Nacos reads are served
    token = (await http(plane, "POST", "/nacos/v1/auth/login", username="app", password="app-pass"))[1]["accessToken"]
    assert (await http(plane, "POST", "/nacos/v1/ns/instance", serviceName="echo", ip="127.0.0.1",
                       port="9001"))[0] == 401
    assert (await http(plane, "GET", "/nacos/v1/ns/instance/list?serviceName=echo"))[0] == 403
    assert (await http(plane, "POST", "/nacos/v1/ns/instance", serviceName="echo", ip="127.0.0.1", port="9001",
                       accessToken=token)) == (200, "ok")
    assert plane.ports("echo") == [9001]
    viewer = (await http(plane, "POST", "/nacos/v1/auth/login", username="viewer",
                         password="view-pass"))[1]["accessToken"]
    assert (await http(plane, "POST", "/nacos/v1/ns/instance", serviceName="echo", ip="127.0.0.1", port="9002",
                       accessToken=viewer))[0] == 401
    assert plane.ports("echo") == [9001]


def test_tokens_expire_and_replicas_sharing_the_secret_accept_each_others() -> None:
    now = [1000.0]
    users = [User("app", hash_password("pw", 1000), True)]
    a = Credentials(None, users, 60, "s" * 32, clock=lambda: now[0])
    b = Credentials(None, users, 60, "s" * 32, clock=lambda: now[0])
    other = Credentials(None, users, 60, "x" * 32, clock=lambda: now[0])
    login = a.login("app", "pw")
    assert login is not None and a.login("app", "nope") is None
    assert a.may_write(login.token) and b.may_write(login.token) and not other.may_read(login.token)
    payload, _, sig = login.token.partition(".")
    assert not a.may_read(payload + "." + sig[::-1]) and not a.may_read(payload)
    now[0] += 61
    assert not a.may_read(login.token)  # expired: the SDK logs in again


async def run_sdk(sdk: Sdk, plane: Plane, tmp_path: Path, username: str, password: str, service: str) -> str:
    app = await start_sdk(sdk, plane.cp.admin_port, tmp_path / f"{sdk.requirement}-{username}-{password}",
                          username=username, password=password)
    try:
        return await app.do(f"register {service} 9101")
    finally:
        await app.close()


@pytest.mark.parametrize("sdk", [PYTHON_3, RUST], ids=["python-3.2", "rust-0.8"])
async def test_grpc_sdks_log_in_and_register_only_with_the_right_password(
        plane: Plane, tmp_path: Path, sdk: Sdk) -> None:
    held: list[int] = []
    app = await start_sdk(sdk, plane.cp.admin_port, tmp_path / "right", username="app", password="app-pass")
    try:
        assert await app.do("register secured 9101") == "ok register"
        await eventually(lambda: plane.ports("secured") == [9101], timeout=30, what="registered with a login")
        held = plane.ports("secured")
    finally:
        await app.close()
    assert held == [9101]
    # a wrong password: the SDK gets no token, and its registration is refused
    answer = await asyncio.wait_for(run_sdk(sdk, plane, tmp_path, "app", "wrong", "refused"), 120)
    assert answer.startswith("error register"), answer
    # a read-only user: refused to register too
    answer = await asyncio.wait_for(run_sdk(sdk, plane, tmp_path, "viewer", "view-pass", "refused"), 120)
    assert answer.startswith("error register"), answer
    assert plane.ports("refused") is None  # never created


async def test_the_http_sdk_1_0_logs_in_and_registers(plane: Plane) -> None:
    def register(password: str) -> bool:
        try:  # a refused login raises in the constructor
            client = nacos.NacosClient(f"127.0.0.1:{plane.cp.admin_port}", namespace="", username="app",
                                       password=password)
            return bool(client.add_naming_instance("http-secured", "127.0.0.1", 9201, ephemeral=False))
        except Exception:
            return False

    assert await asyncio.to_thread(register, "wrong") is False
    assert plane.ports("http-secured") is None
    assert await asyncio.to_thread(register, "app-pass") is True
    assert plane.ports("http-secured") == [9201]
