"""Read-only debug endpoints: what each node group is served, the registry, the sources.

``/debug/config_dump?group=G`` is like Envoy's config_dump, from the control plane's
side: every type of the group's snapshot, its version, and each resource decoded from
the bytes on the wire; ``&locality=REGION/ZONE`` shows what a node in that locality is
served (its ClusterLoadAssignments prioritised by distance). ``/debug/registry`` is the merged view (``?source=S``: one
source's own contribution), ``/debug/sources`` each source's state.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xdscp.cache.cache import SnapshotCache
from xdscp.cache.node_group import DEFAULT_GROUP
from xdscp.model.locality import Locality
from xdscp.model.registry import Registry
from xdscp.model.service import Service
from xdscp.server.json_view import response_dict
from xdscp.server.tracker import StreamTracker
from xdscp.sources.states import SourceStates
from xdscp.type_urls import kind_name


class DebugApi:
    """The /debug/config_dump, /debug/registry and /debug/sources routes."""

    def __init__(self, cache: SnapshotCache, tracker: StreamTracker, registry: Registry,
                 sources: SourceStates) -> None:
        self.cache = cache
        self.tracker = tracker
        self.registry = registry
        self.sources = sources

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/debug/config_dump", self.config_dump), web.get("/debug/registry", self.registry_view),
                web.get("/debug/sources", self.sources_view)]

    async def config_dump(self, request: web.Request) -> web.Response:
        """``group``: default, the one group whose nodes are connected, else ``default``;
        ``connected`` says whether a node of the group is. An unknown ``type`` is a 404 that
        lists the types served. ``locality``: ``region/zone``."""
        groups = self.tracker.groups()
        group = request.query.get("group") or (groups[0] if len(groups) == 1 else DEFAULT_GROUP)
        locality = None
        if request.query.get("locality"):
            region, sep, zone = request.query["locality"].partition("/")
            if not sep:
                return web.json_response({"error": "locality must be REGION/ZONE (either may be empty)"},
                                         status=400)
            locality = Locality(region, zone)
        snapshot = self.cache.lease(locality) if locality is not None else self.cache.get()
        if snapshot is None:
            return web.json_response({"error": f"nothing published for group {group!r} yet", "groups": groups},
                                     status=404)
        wanted = request.query.get("type")
        types: dict[str, Any] = {}
        for type_url, ts in sorted(snapshot.types.items()):
            if wanted and wanted not in (type_url, kind_name(type_url)):
                continue
            doc = response_dict(ts)
            types[type_url] = {"version": ts.version, "resources": doc.get("resources", [])}
        if wanted and not types:
            served = sorted(kind_name(t) for t in snapshot.types)
            return web.json_response({"error": f"no type {wanted!r} is served; types: {', '.join(served)}",
                                      "types": served}, status=404)
        return web.json_response({"group": group, "connected": group in groups, "groups": groups,
                                  "locality": str(locality) if locality is not None else None,
                                  "localities": [str(loc) for loc in self.cache.localities()], "types": types})

    async def registry_view(self, request: web.Request) -> web.Response:
        source = request.query.get("source")
        if source is None:
            services = self.registry.services
        else:
            try:
                services = self.registry.source_services(source)
            except KeyError:
                return web.json_response({"error": f"no source named {source!r}"}, status=404)
        return web.json_response({"source": source, "services": [_service_json(services[k]) for k in sorted(services)]})

    async def sources_view(self, _: web.Request) -> web.Response:
        return web.json_response({"sources": [st.as_json() for st in self.sources.states()]})


def _service_json(svc: Service) -> dict[str, Any]:
    return dict(svc.model_dump(mode="json"))
