"""``kind: http``: a JSON service list polled over HTTP. The endpoint here is a real
aiohttp server on loopback, standing in for the user's own service-list API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from pydantic import ValidationError

from xdscp.config import HttpSourceConfig
from xdscp.runtime_settings import http_settings
from xdscp.sources.http import HttpSource
from xdscp.sources.salvage import salvage_services
from xdscp.type_urls import ENDPOINT

from plane import Plane, running_plane, service
from upstreams import serving
from waiting import eventually
from xds_client import node, sotw_request, sotw_stream, unpack


class ServiceListApi:
    """Serves ``document`` at /services with an ETag; counts what it answered."""

    def __init__(self) -> None:
        self.document: Any = {"services": [service("echo", 9001, 9002)]}
        self.status = 200
        self.raw: bytes | None = None  # sent instead of the document when set
        self.answers: list[int] = []
        self.etags = True

    async def handle(self, request: web.Request) -> web.Response:
        body = self.raw if self.raw is not None else json.dumps(self.document).encode()
        etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
        if self.status != 200:
            self.answers.append(self.status)
            return web.Response(status=self.status, text="registry unavailable")
        if self.etags and request.headers.get("If-None-Match") == etag:
            self.answers.append(304)
            return web.Response(status=304, headers={"ETag": etag})
        self.answers.append(200)
        return web.Response(body=body, content_type="application/json",
                            headers={"ETag": etag} if self.etags else {})


@pytest.fixture
async def api() -> AsyncIterator[tuple[ServiceListApi, str]]:
    state = ServiceListApi()
    app = web.Application()
    app.router.add_get("/services", state.handle)
    async with serving(app) as url:
        yield state, f"{url}/services"


@pytest.fixture
async def http_plane(tmp_path: Path, api: tuple[ServiceListApi, str]) -> AsyncIterator[Plane]:
    _, url = api
    async with running_plane(tmp_path, None, sources=[
        HttpSourceConfig(kind="http", name="list", url=url, interval=0.05, timeout=1.0)]) as plane:
        yield plane


def source_up(name: str) -> float | None:
    return REGISTRY.get_sample_value("xdscp_source_up", {"source": name})


async def test_changes_in_the_list_reach_an_xds_client(http_plane: Plane, api: tuple[ServiceListApi, str]) -> None:
    state, _ = api
    async with grpc.aio.insecure_channel(http_plane.target) as ch:
        s = sotw_stream(ch)
        s.send(sotw_request(ENDPOINT, ["echo"], with_node=node()))
        first = await s.recv()
        assert len(unpack(first.resources[0]).endpoints[0].lb_endpoints) == 2
        s.send(sotw_request(ENDPOINT, ["echo"], version=first.version_info, nonce=first.nonce))
        state.document = {"services": [service("echo", 9001, 9002, 9003)]}
        pushed = await s.recv()
        assert len(unpack(pushed.resources[0]).endpoints[0].lb_endpoints) == 3
        await s.close()


async def test_unchanged_list_is_a_304_and_not_reapplied(http_plane: Plane, api: tuple[ServiceListApi, str]) -> None:
    state, _ = api
    published = http_plane.cp.publisher.published
    await eventually(lambda: state.answers.count(304) >= 3, what="three 304 answers")
    assert http_plane.cp.publisher.published == published
    assert source_up("list") == 1


async def test_an_unreachable_or_broken_endpoint_keeps_the_last_good_view(
        http_plane: Plane, api: tuple[ServiceListApi, str]) -> None:
    state, _ = api
    for broken in ({"status": 503}, {"raw": b"<html>oops</html>"}, {"raw": b""}, {"raw": b'{"nodes": []}'}):
        state.status = broken.get("status", 200)  # type: ignore[assignment]
        state.raw = broken.get("raw")  # type: ignore[assignment]
        source = http_plane.cp.sources[0]
        await eventually(lambda s=source: s.last_error is not None, what=f"rejected {broken}")
        assert http_plane.ports() == [9001, 9002], broken  # nothing wiped
        ready = http_plane.cp.readiness()
        assert ready["sources"]["list"]["last_error"] and source_up("list") == 0
        state.status, state.raw = 200, None
        await eventually(lambda s=source: s.last_error is None, what="recovered")


async def test_an_empty_list_said_on_purpose_removes_every_service(
        http_plane: Plane, api: tuple[ServiceListApi, str]) -> None:
    state, _ = api
    state.document = {"services": []}
    await eventually(lambda: http_plane.ports() is None, what="echo gone")


async def test_bad_entries_are_dropped_alone(http_plane: Plane, api: tuple[ServiceListApi, str]) -> None:
    state, _ = api
    state.document = {"services": [
        {"name": "echo", "instances": [
            {"host": "127.0.0.1", "port": 9001},
            {"host": "not-an-ip", "port": 9002},
            {"host": "127.0.0.1"},
            {"host": "127.0.0.1", "port": 9001, "weight": 5},
            {"host": "127.0.0.1", "port": 9004},
        ]},
        {"name": "bad name!", "instances": [{"host": "127.0.0.1", "port": 9100}]},
        {"name": "api", "instances": [{"host": "127.0.0.1", "port": 9101}]},
    ]}
    await eventually(lambda: http_plane.ports("api") == [9101], what="api served")
    assert http_plane.ports() == [9001, 9004]
    assert http_plane.cp.sources[0].last_error is None  # a good document with bad entries


def test_salvage_reports_each_dropped_entry() -> None:
    out = salvage_services([
        {"name": "a", "locality_failover": True,
         "instances": [{"host": "10.0.0.1", "port": 0}, {"host": "10.0.0.2", "port": 80}]},
        {"name": "a", "instances": []},
        "junk",
        {"name": "b", "lb_policy": "FASTEST"},
    ])
    assert [s.name for s in out.services] == ["a"]
    assert [i.port for i in out.services[0].instances] == [80] and out.services[0].locality_failover is True
    assert len(out.problems) == 4
    assert "instances[0]" in out.problems[0] and "port" in out.problems[0]
    assert "listed twice" in out.problems[1]
    assert "must be a mapping" in out.problems[2]
    assert "lb_policy" in out.problems[3]


def test_backoff_doubles_while_failing_and_resets() -> None:
    src = HttpSource("s", http_settings(HttpSourceConfig(kind="http", url="http://127.0.0.1:1/x", interval=1.0)))
    delays = []
    for _ in range(7):
        src._fail("down")
        delays.append(src.next_delay())
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    src._ok()
    assert src.next_delay() == 1.0


def test_only_http_urls_are_accepted() -> None:
    for bad in ("ftp://x/y", "127.0.0.1:8080/services", "http://"):
        with pytest.raises(ValidationError):
            HttpSourceConfig(kind="http", url=bad)


async def test_an_endpoint_never_reached_publishes_nothing(tmp_path: Path) -> None:
    from xdscp.local.ports import free_port

    url = f"http://127.0.0.1:{free_port()}/services"  # nothing listens there
    async with running_plane(tmp_path, None, sources=[
        HttpSourceConfig(kind="http", name="down", url=url, interval=0.05, timeout=0.5)], published=False) as plane:
        source = plane.cp.sources[0]
        await eventually(lambda: source.last_error is not None, what="a failed poll")
        assert "cannot reach" in (source.last_error or "")
        ready = plane.cp.readiness()
        assert ready["ready"] is False and plane.cp.publisher.published == 0  # no empty world
        assert source_up("down") == 0


async def test_a_list_larger_than_one_read_loads_whole(http_plane: Plane, api: tuple[ServiceListApi, str]) -> None:
    # A list of a few MB arrives in many chunks: every one of them must be read.
    state, _ = api
    state.document = {"services": [service(f"svc-{i}", 9001, 9002, metadata={"team": "t" * 100})
                                   for i in range(5000)]}
    assert len(json.dumps(state.document)) > 1_000_000
    source = http_plane.cp.sources[0]
    await eventually(lambda: len(http_plane.cp.registry.services) == 5000, timeout=60, what="all 5,000 services")
    assert source.last_error is None
