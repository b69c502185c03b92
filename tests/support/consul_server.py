"""A small server following Consul's documented HTTP API for the two endpoints the consul
source uses, with blocking-query semantics. Consul itself cannot be installed here (no
Debian package, no internet). Kept in tests/, never in the package.

* ``GET /v1/catalog/services``: ``{"name": [tags...]}``.
* ``GET /v1/health/service/<name>``: ``[{"Node": {...}, "Service": {...}, "Checks": [...]}]``.
* Both answer ``X-Consul-Index``; with ``?index=N`` they block until the index passes N
  or ``wait`` (e.g. ``30s``) elapses, then answer the current state.
* ``X-Consul-Token`` is required when ``token`` is set (403 otherwise, as with ACLs).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web


class ConsulTestServer:
    """State: ``services[name] = list of health entries``; ``bump()`` after changing it."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.services: dict[str, list[dict[str, Any]]] = {}
        self.index = 1
        self.blocked_queries = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def bump(self) -> None:
        self.index += 1
        self._changed.set()
        self._changed = asyncio.Event()

    @staticmethod
    def entry(service: str, address: str, port: int, *, status: str = "passing", weight: int = 1,
              meta: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "Node": {"Node": "node-1", "Address": "127.0.0.1", "Datacenter": "dc1", "Meta": {}},
            "Service": {"ID": f"{service}-{port}", "Service": service, "Address": address, "Port": port,
                        "Tags": [], "Meta": meta or {}, "Weights": {"Passing": weight, "Warning": 1}},
            "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
                       {"CheckID": f"service:{service}-{port}", "Status": status}],
        }

    async def _blocking(self, request: web.Request) -> web.Response | None:
        if self.token is not None and request.headers.get("X-Consul-Token") != self.token:
            return web.Response(status=403, text="ACL not found")
        wanted = int(request.query.get("index", "0") or 0)
        if wanted and wanted >= self.index:
            self.blocked_queries += 1
            wait = float(request.query.get("wait", "300s").rstrip("s"))
            try:
                await asyncio.wait_for(self._changed.wait(), wait)
            except TimeoutError:
                pass
        return None

    async def catalog(self, request: web.Request) -> web.Response:
        denied = await self._blocking(request)
        if denied is not None:
            return denied
        body = {"consul": [], **{name: [] for name in self.services}}
        return web.json_response(body, headers={"X-Consul-Index": str(self.index)})

    async def health(self, request: web.Request) -> web.Response:
        denied = await self._blocking(request)
        if denied is not None:
            return denied
        entries = self.services.get(request.match_info["name"], [])
        return web.json_response(entries, headers={"X-Consul-Index": str(self.index)})

    async def start(self) -> ConsulTestServer:
        app = web.Application()
        app.router.add_get("/v1/catalog/services", self.catalog)
        app.router.add_get("/v1/health/service/{name}", self.health)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        self.bump()  # release blocked queries
        if self._runner is not None:
            await self._runner.cleanup()
