"""Admin endpoints: /healthz, /readyz, /debug/nodes, /metrics (plus the routes it is given)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xdscp.credentials import Credentials
from xdscp.metrics import REJECTED_REQUESTS
from xdscp.server.tracker import StreamTracker


def presented_token(request: web.Request, form: Any = None) -> str:
    """The token a request carries: ``Authorization: Bearer``, or Nacos' ``accessToken``
    (query string or form)."""
    presented = request.headers.get("Authorization", "")
    presented = presented[len("Bearer "):] if presented.startswith("Bearer ") else ""
    if not presented:
        presented = request.query.get("accessToken", "")
    if not presented and form is not None:
        presented = str(form.get("accessToken", ""))
    return presented


def auth_guard(credentials: Credentials) -> Any:
    """Middleware: a request that changes state (anything but GET/HEAD/OPTIONS) must carry
    the write token or a writing user's token, or gets a 401; with users configured, a
    read of the Nacos APIs needs a user's token too (403, as Nacos answers)."""

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in LOGIN_PATHS:
            return await handler(request)
        writes = _changes_state(request)
        if not writes and not (credentials.reads_guarded and request.path.startswith("/nacos/")):
            return await handler(request)
        form = (await request.post()) if request.content_type == "application/x-www-form-urlencoded" else None
        token = presented_token(request, form)
        if writes and not credentials.may_write(token):
            REJECTED_REQUESTS.labels("admin_token").inc()
            return web.json_response({"error": "this endpoint changes the registry: send the admin write token "
                                               "or a writing user's token (Authorization: Bearer ..., or "
                                               "accessToken)"}, status=401)
        if not writes and not credentials.may_read(token):
            REJECTED_REQUESTS.labels("admin_token").inc()
            return web.json_response({"code": 10001, "message": "access denied",
                                      "data": "a valid accessToken is required: log in first"}, status=403)
        return await handler(request)

    return guard


# Nacos' login endpoints: 1.x/2.x clients use the v1 ones, 3.x tries v3 first.
LOGIN_PATHS = ("/nacos/v1/auth/login", "/nacos/v1/auth/users/login", "/nacos/v3/auth/user/login")
USER_NOT_FOUND = "User not found! Please check user exist or password is right!"  # Nacos' own words


def login_routes(credentials: Credentials) -> list[web.RouteDef]:
    async def login(request: web.Request) -> web.Response:
        form = await request.post() if request.body_exists else {}
        username = str(form.get("username") or request.query.get("username") or "")
        password = str(form.get("password") or request.query.get("password") or "")
        done = credentials.login(username, password)
        if done is None:
            REJECTED_REQUESTS.labels("admin_login").inc()
            return web.json_response({"code": 10001, "message": "access denied", "data": USER_NOT_FOUND},
                                     status=403)
        return web.json_response({"accessToken": done.token, "tokenTtl": done.ttl, "globalAdmin": False,
                                  "username": done.user.name})

    return [web.post(path, login) for path in LOGIN_PATHS]


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
                    extra_routes: Sequence[web.AbstractRouteDef] = (), credentials: Credentials | None = None,
                    read_only_app: bool = False) -> web.Application:
    """``readiness()`` returns {"ready": bool, ...details}; /readyz answers 503 until ready.
    ``extra_routes``: what the sources serve (the embedded registry's APIs), REST xDS and debug views;
    with ``credentials`` guarding writes, every request that changes state must carry a token
    (see auth_guard); a ``read_only_app`` serves none of them."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        state = readiness()
        return web.json_response(state, status=200 if state["ready"] else 503)

    async def nodes(_: web.Request) -> web.Response:
        return web.json_response({"nodes": tracker.nodes()})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    guarded = credentials is not None and (credentials.writes_guarded or credentials.reads_guarded)
    middlewares = [read_only] if read_only_app else [auth_guard(credentials)] if guarded and credentials else []
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/debug/nodes", nodes)
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(extra_routes)
    if credentials is not None and credentials.users and not read_only_app:
        app.router.add_routes(login_routes(credentials))
    return app
