"""Admin endpoints: /healthz, /readyz, /debug/nodes, /metrics (plus the routes it is given)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xdscp.server.tracker import StreamTracker


def build_admin_app(tracker: StreamTracker, readiness: Callable[[], dict[str, Any]],
                    extra_routes: Sequence[web.RouteDef] = ()) -> web.Application:
    """``readiness()`` returns {"ready": bool, ...details}; /readyz answers 503 until ready.
    ``extra_routes`` are the embedded registry's APIs, when there is one, and REST xDS."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        state = readiness()
        return web.json_response(state, status=200 if state["ready"] else 503)

    async def nodes(_: web.Request) -> web.Response:
        return web.json_response({"nodes": tracker.nodes()})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/debug/nodes", nodes)
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(extra_routes)
    return app
