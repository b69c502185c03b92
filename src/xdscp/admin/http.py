"""Admin endpoints: /healthz, /readyz, /debug/nodes, /metrics (plus the routes it is given)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xdscp.metrics import REJECTED_REQUESTS
from xdscp.server.tracker import StreamTracker


def write_guard(token: str) -> Any:
    """Middleware: a request that changes state (anything but GET/HEAD/OPTIONS) must carry
    ``Authorization: Bearer <token>``, or Nacos' ``accessToken`` parameter, or gets a 401."""
    expected = token.encode()

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if not _changes_state(request):
            return await handler(request)
        presented = request.headers.get("Authorization", "")
        presented = presented[len("Bearer "):] if presented.startswith("Bearer ") else ""
        if not presented:
            presented = request.query.get("accessToken", "")
        if not presented and request.content_type == "application/x-www-form-urlencoded":
            presented = str((await request.post()).get("accessToken", ""))
        if not hmac.compare_digest(presented.encode(), expected):
            REJECTED_REQUESTS.labels("admin_token").inc()
            return web.json_response({"error": "this endpoint changes the registry: send the admin write token "
                                               "(Authorization: Bearer ..., or accessToken)"}, status=401)
        return await handler(request)

    return guard


def _changes_state(request: web.Request) -> bool:
    # REST-JSON xDS polls are POSTs that read.
    return request.method not in ("GET", "HEAD", "OPTIONS") and not request.path.startswith("/v3/discovery:")


@web.middleware
async def read_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """Middleware of the read-only address: nothing that changes state is served there."""
    if _changes_state(request):
        REJECTED_REQUESTS.labels("admin_read_only").inc()
        return web.json_response({"error": "this address is read-only; registration is served on the admin "
                                           "address"}, status=405)
    return await handler(request)


def build_admin_app(tracker: StreamTracker, readiness: Callable[[], dict[str, Any]],
                    extra_routes: Sequence[web.RouteDef] = (), write_token: str | None = None,
                    read_only_app: bool = False) -> web.Application:
    """``readiness()`` returns {"ready": bool, ...details}; /readyz answers 503 until ready.
    ``extra_routes``: what the sources serve (the embedded registry's APIs), REST xDS and debug views;
    with ``write_token``, every request that changes state must carry it; a ``read_only_app``
    serves none of them."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        state = readiness()
        return web.json_response(state, status=200 if state["ready"] else 503)

    async def nodes(_: web.Request) -> web.Response:
        return web.json_response({"nodes": tracker.nodes()})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    middlewares = [read_only] if read_only_app else [write_guard(write_token)] if write_token else []
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/debug/nodes", nodes)
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(extra_routes)
    return app
