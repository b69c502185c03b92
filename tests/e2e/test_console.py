"""The web console in a real browser: Debian's chromium driven by Playwright (no browser is
downloaded; the test skips when chromium is not installed: `make sysdeps` installs it).

Each test saves screenshots of the pages it looked at under its temporary folder."""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.type_urls import CLUSTER

from plane import Plane, embedded_source, running_plane
from waiting import eventually
from xds_client import node, sotw_request, sotw_stream

TOKEN = "console-test-write-token-0123456789"
WAIT_MS = 15_000  # generous: CI machines are shared


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make sysdeps installs it)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


class Watched:
    """A page, and every console error or uncaught exception it has shown."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text}")


async def open_page(browser: Browser) -> Watched:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    return Watched(await context.new_page())


def ui(plane: Plane, path: str, read_only: bool = False) -> str:
    port = plane.cp.admin_read_only_port if read_only else plane.cp.admin_port
    return f"http://127.0.0.1:{port}/ui/{path}"


def register(plane: Plane, name: str, port: int, ip: str = "127.0.0.1") -> None:
    """Through the Nacos v1 HTTP API, as a Nacos SDK or curl does (a persistent instance)."""
    url = (f"http://127.0.0.1:{plane.cp.admin_port}/nacos/v1/ns/instance?serviceName={name}&ip={ip}&port={port}"
           f"&ephemeral=false&accessToken={TOKEN}")
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5) as r:
        assert r.read() == b"ok"


@pytest.fixture
async def console_plane(tmp_path: Path) -> AsyncIterator[Plane]:
    """The embedded registry (no checks: the instances are not real), a write token and a
    read-only address."""
    async with running_plane(tmp_path, None, sources=[embedded_source(tmp_path, instance_check={"enabled": False})],
                             admin={"write_token": TOKEN, "read_only_address": "127.0.0.1:0"}) as p:
        yield p


async def test_every_page_loads_clean_and_a_registration_appears_without_a_reload(
        tmp_path: Path, console_plane: Plane, browser: Browser) -> None:
    w = await open_page(browser)
    await w.page.goto(ui(console_plane, ""))
    assert w.page.url.endswith("/ui/services")
    await expect(w.page.locator("#services")).to_contain_text("no services")
    await asyncio.to_thread(register, console_plane, "echo", 9001)
    # No reload: the live part polls.
    row = w.page.locator('tr[data-service="echo"]')
    await expect(row).to_be_visible(timeout=WAIT_MS)
    await expect(row).to_contain_text("embedded")
    await w.page.screenshot(path=str(tmp_path / "services.png"), full_page=True)
    await row.locator("a").click()
    await expect(w.page.locator('tr[data-instance="127.0.0.1:9001"]')).to_contain_text("healthy")
    await w.page.screenshot(path=str(tmp_path / "service.png"), full_page=True)
    for page in ("proxies", "sources", "pushes"):
        await w.page.goto(ui(console_plane, page))
        await expect(w.page.locator("#live table").first).to_be_visible()
        await w.page.screenshot(path=str(tmp_path / f"{page}.png"), full_page=True)
    await expect(w.page.locator('tr[data-push="2"]')).to_contain_text("public/DEFAULT_GROUP/echo")
    await expect(w.page.locator("#latency-chart canvas")).to_have_count(1)
    await w.page.goto(ui(console_plane, "sources"))
    await expect(w.page.locator('tr[data-source="embedded"]')).to_contain_text("up")
    await w.page.wait_for_timeout(1500)  # a poll or two more: their errors count too
    assert w.errors == []


async def test_disabling_an_instance_in_the_console_takes_it_out_of_envoy(
        tmp_path: Path, console_plane: Plane, browser: Browser) -> None:
    for port in (9001, 9002):
        await asyncio.to_thread(register, console_plane, "echo", port)
    envoy = EnvoyProcess(REPO_ENVOY_DIR / "bootstrap-ads.yaml", console_plane.target, tmp_path)
    await asyncio.to_thread(envoy.start)
    try:
        async def hosts() -> set[str]:
            return set(await asyncio.to_thread(envoy.cluster_hosts, "echo"))

        await eventually(lambda: hosts_are(hosts, {"127.0.0.1:9001", "127.0.0.1:9002"}), timeout=20,
                         what="both instances in Envoy")
        w = await open_page(browser)
        await w.page.goto(ui(console_plane, "services/public/DEFAULT_GROUP/echo"))
        row = w.page.locator('tr[data-instance="127.0.0.1:9001"]')
        # Without the write token the action is refused, and the page says so.
        await row.locator('button[name="disable"]').click()
        await expect(w.page.locator("#flash")).to_contain_text("HTTP 401", timeout=WAIT_MS)
        assert await hosts() == {"127.0.0.1:9001", "127.0.0.1:9002"}
        await w.page.fill("#token", TOKEN)
        await row.locator('button[name="disable"]').click()
        await expect(w.page.locator("#message")).to_contain_text("disable: 127.0.0.1:9001", timeout=WAIT_MS)
        await expect(row).to_contain_text("disabled")
        await eventually(lambda: hosts_are(hosts, {"127.0.0.1:9002"}), timeout=20, what="9001 gone from Envoy")
        # A weight that is not a number is refused with the reason; a good one is applied.
        await row.locator('input[name="weight"]').fill("heavy")
        await row.locator("text=set weight").click()
        await expect(w.page.locator("#error")).to_contain_text("could not convert", timeout=WAIT_MS)
        await w.page.screenshot(path=str(tmp_path / "service-actions.png"), full_page=True)
        await row.locator('button[name="enable"]').click()
        await eventually(lambda: hosts_are(hosts, {"127.0.0.1:9001", "127.0.0.1:9002"}), timeout=20,
                         what="9001 back in Envoy")
        # Chromium and htmx log the two refusals this test caused (401, 400); nothing else.
        assert w.errors and all("401" in e or "400" in e for e in w.errors), w.errors
    finally:
        await asyncio.to_thread(envoy.stop)


async def hosts_are(hosts: Any, expected: set[str]) -> bool:
    return bool(await hosts() == expected)


async def test_a_client_that_nacks_shows_as_nacked_with_its_message(
        tmp_path: Path, console_plane: Plane, browser: Browser) -> None:
    await asyncio.to_thread(register, console_plane, "echo", 9001)

    def published() -> bool:
        snapshot = console_plane.cp.cache.get()
        return snapshot is not None and "echo" in snapshot.get(CLUSTER).resources

    # The registration's push must not land between the answer below and its NACK: a NACK of
    # a response that is no longer the latest is stale, and ignored (as the protocol says).
    await eventually(published, what="the registration published")
    async with grpc.aio.insecure_channel(console_plane.target) as ch:
        good, bad = sotw_stream(ch), sotw_stream(ch)
        good.send(sotw_request(CLUSTER, with_node=node("good-proxy")))
        bad.send(sotw_request(CLUSTER, with_node=node("nacking-proxy")))
        r1, r2 = await good.recv(), await bad.recv()
        good.send(sotw_request(CLUSTER, version=r1.version_info, nonce=r1.nonce))
        bad.send(sotw_request(CLUSTER, nonce=r2.nonce, error="cluster echo: invalid lb_policy for this proxy"))
        w = await open_page(browser)
        await w.page.goto(ui(console_plane, "proxies"))
        nacking = w.page.locator('tr[data-node="nacking-proxy"]')
        await expect(nacking.locator('tr[data-type="Cluster"]')).to_contain_text("NACKed", timeout=WAIT_MS)
        await expect(nacking).to_contain_text("cluster echo: invalid lb_policy for this proxy")
        await expect(w.page.locator('tr[data-node="good-proxy"] tr[data-type="Cluster"]')).to_contain_text("in sync")
        await w.page.screenshot(path=str(tmp_path / "proxies-nack.png"), full_page=True)
        assert w.errors == []
        await good.close()
        await bad.close()


async def test_the_read_only_address_shows_no_actions_and_refuses_them(
        tmp_path: Path, console_plane: Plane, browser: Browser) -> None:
    await asyncio.to_thread(register, console_plane, "echo", 9001)
    w = await open_page(browser)
    await w.page.goto(ui(console_plane, "services/public/DEFAULT_GROUP/echo", read_only=True))
    await expect(w.page.locator('tr[data-instance="127.0.0.1:9001"]')).to_be_visible()
    await expect(w.page.locator("#read-only")).to_be_visible()
    assert await w.page.locator("#live button").count() == 0 and await w.page.locator("#token").count() == 0
    await w.page.screenshot(path=str(tmp_path / "read-only.png"), full_page=True)
    assert w.errors == []

    def post() -> tuple[int, Any]:
        req = urllib.request.Request(
            ui(console_plane, "services/public/DEFAULT_GROUP/echo/instances/127.0.0.1:9001", read_only=True),
            data=b"action=disable", method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = await asyncio.to_thread(post)
    assert status == 405 and "read-only" in body["error"]
    svc = console_plane.cp.registry.services[next(iter(console_plane.cp.registry.services))]
    assert all(i.enabled for i in svc.instances)


async def test_pages_reach_services_whose_names_carry_colons_and_slashes(console_plane: Plane) -> None:
    """No browser: the links a page gives work for Dubbo's names, and a broken action or an
    unknown service gets a clear answer."""
    await asyncio.to_thread(register, console_plane, "providers:org.demo.Api:1.0.0:", 9001)
    await asyncio.to_thread(register, console_plane, "team/orders", 9002)

    def get(url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    status, listing = await asyncio.to_thread(get, ui(console_plane, "services?q=demo"))
    assert status == 200 and "providers:org.demo.Api:1.0.0:" in listing and "team/orders" not in listing
    for quoted, port in (("providers%3Aorg.demo.Api%3A1.0.0%3A", 9001), ("team%2Forders", 9002)):
        assert f'href="/ui/services/public/DEFAULT_GROUP/{quoted}"' in (await asyncio.to_thread(
            get, ui(console_plane, "services")))[1]
        status, page = await asyncio.to_thread(get, ui(console_plane, f"services/public/DEFAULT_GROUP/{quoted}"))
        assert status == 200 and f'data-instance="127.0.0.1:{port}"' in page, page
    status, page = await asyncio.to_thread(get, ui(console_plane, "services/public/DEFAULT_GROUP/nothing-here"))
    assert status == 200 and "No service public/DEFAULT_GROUP/nothing-here" in page

    def act(action: str) -> tuple[int, str]:
        req = urllib.request.Request(ui(console_plane, "services/public/DEFAULT_GROUP/team%2Forders/instances/"
                                                       "127.0.0.1:9002"),
                                     data=f"action={action}".encode(), method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    status, page = await asyncio.to_thread(act, "explode")
    assert status == 400 and "unknown action &#39;explode&#39;" in page
    status, page = await asyncio.to_thread(act, "drain")
    assert status == 200 and "drain: 127.0.0.1:9002" in page
    svc = next(s for k, s in console_plane.cp.registry.services.items() if k.name == "team/orders")
    assert [i.draining for i in svc.instances] == [True]
