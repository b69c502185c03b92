"""The console's routes under ``/ui/``: server-rendered pages, their live parts, and the
instance actions.

Each page renders whole; with ``HX-Request`` (htmx polling it) only its ``live`` part,
so a registration shows up within a second without a reload. Instance actions are POSTs:
on the admin address they pass the admin write guard like every other write (the page
sends the token it is given as ``Authorization: Bearer``); the read-only address serves
the same pages without them, and refuses any POST.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web
from pydantic import ValidationError

from xdscp.admin.console import views
from xdscp.cache.cache import SnapshotCache
from xdscp.errors import XdscpError
from xdscp.logfmt import log_event
from xdscp.model.registry import Registry
from xdscp.model.service import ServiceKey
from xdscp.server.tracker import StreamTracker
from xdscp.sources.embedded.contract import RegistryStore
from xdscp.sources.states import SourceStates
from xdscp.translation.push_log import PushLog

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PAGES = (("services", "Services"), ("proxies", "Proxies"), ("sources", "Sources"), ("pushes", "Pushes"))
# What the instance buttons change, as the native API's PATCH fields.
ACTIONS: Mapping[str, dict[str, Any]] = {
    "enable": {"enabled": True}, "disable": {"enabled": False},
    "drain": {"draining": True}, "undrain": {"draining": False},
}


class Console:
    """The pages over one control plane. ``stores``: the embedded registries by source
    name (their instances get actions); ``writable``: False on the read-only address."""

    def __init__(self, registry: Registry, sources: SourceStates, tracker: StreamTracker, cache: SnapshotCache,
                 pushes: PushLog, stores: Mapping[str, RegistryStore], *, locality_default: bool,
                 writable: bool, token_needed: bool) -> None:
        self.registry = registry
        self.sources = sources
        self.tracker = tracker
        self.cache = cache
        self.pushes = pushes
        self.stores = stores
        self.locality_default = locality_default
        self.writable = writable
        self.token_needed = token_needed
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                      autoescape=True, undefined=jinja2.StrictUndefined)
        # One path segment: Nacos names carry ':' and '/' (Dubbo's providers:...), all quoted.
        self.env.filters["segment"] = lambda s: quote(str(s), safe="")

    def routes(self) -> list[web.AbstractRouteDef]:
        routes: list[web.AbstractRouteDef] = [
            web.get("/ui", self.home), web.get("/ui/", self.home),
            web.get("/ui/services", self.services),
            web.get("/ui/services/{namespace}/{group}/{name}", self.service),
            web.get("/ui/proxies", self.proxies), web.get("/ui/sources", self.source_list),
            web.get("/ui/pushes", self.push_list),
            web.static("/ui/static", HERE / "static"),
        ]
        if self.writable:
            routes.append(web.post("/ui/services/{namespace}/{group}/{name}/instances/{address}", self.act))
        return routes

    def _render(self, request: web.Request, template: str, page: str, self_url: str | None = None,
                **context: Any) -> web.Response:
        """``self_url``: what the live part polls (default: this request's path and query)."""
        live_only = request.headers.get("HX-Request") == "true"
        html = self.env.get_template(template).render(
            pages=PAGES, page=page, live_only=live_only, writable=self.writable,
            self_url=self_url or request.path_qs,
            token_needed=self.token_needed and self.writable, **context)
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def home(self, _: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/services")

    async def services(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "").strip()
        rows, matched = views.service_rows(self.registry, query, self.locality_default)
        return self._render(request, "services.html", "services", rows=rows, matched=matched, query=query,
                            limit=views.MAX_LISTED)

    async def service(self, request: web.Request, message: str | None = None, error: str | None = None
                      ) -> web.Response:
        key = _key(request)
        page_url = "/ui/services/" + "/".join(quote(part, safe="") for part in (key.namespace, key.group, key.name))
        detail = views.service_detail(self.registry, self.pushes, key, self.locality_default)
        if detail is None:
            return self._render(request, "missing.html", "services", page_url, what=repr(key))
        for inst in detail["instances"]:
            inst["actions"] = self.writable and any(s in self.stores for s in inst["sources"])
        return self._render(request, "service.html", "services", page_url, svc=detail, message=message, error=error,
                            embedded=any(s in self.stores for s in detail["sources"]))

    async def act(self, request: web.Request) -> web.Response:
        """One instance action (``action``: enable, disable, drain, undrain, or weight with
        ``weight``); answers the service's page as it is now, with a line saying what was done."""
        key = _key(request)
        host, _, port_text = request.match_info["address"].rpartition(":")
        form = await request.post()
        action = str(form.get("action", ""))
        store = next((self.stores[s] for s in views.sources_of(self.registry, key) if s in self.stores), None)
        try:
            if store is None:
                raise web.HTTPNotFound(text="no instance of this service is in the embedded registry")
            if action == "weight":
                changes: dict[str, Any] = {"weight": float(str(form.get("weight", "")))}
            elif action in ACTIONS:
                changes = dict(ACTIONS[action])
            else:
                raise ValueError(f"unknown action {action!r}")
            inst = await store.update(key, host, int(port_text), changes)
        except (ValueError, ValidationError, XdscpError) as e:
            reason = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
            return await self._answer(request, error=f"{action} {host}:{port_text}: {reason}", status=400)
        log_event(log, logging.INFO, "console.instance_changed", service=repr(key), instance=inst.address,
                  action=action, changes=changes, peer=request.remote)
        done = ", ".join(f"{k}={v}" for k, v in changes.items())
        return await self._answer(request, message=f"{action}: {inst.address} ({done}); pushed to every proxy")

    async def _answer(self, request: web.Request, *, message: str | None = None, error: str | None = None,
                      status: int = 200) -> web.Response:
        resp = await self.service(request, message=message, error=error)
        resp.set_status(status)
        return resp

    async def proxies(self, request: web.Request) -> web.Response:
        rows = views.proxy_rows(self.tracker.nodes(), self.cache)
        return self._render(request, "proxies.html", "proxies", rows=rows)

    async def source_list(self, request: web.Request) -> web.Response:
        return self._render(request, "sources.html", "sources", rows=views.source_rows(self.sources.states()))

    async def push_list(self, request: web.Request) -> web.Response:
        return self._render(request, "pushes.html", "pushes", rows=views.push_rows(self.pushes, self.tracker.nodes()),
                            latency=views.push_latency())


def _key(request: web.Request) -> ServiceKey:
    m = request.match_info
    return ServiceKey(m["namespace"], m["group"], m["name"])
