"""REST-JSON xDS: ``POST /v3/discovery:<type>`` for clients that poll instead of streaming.

Envoy's ``api_type: REST`` posts a DiscoveryRequest as JSON every ``refresh_delay`` and
expects a DiscoveryResponse as JSON, or ``304 Not Modified`` when the ``version_info``
it sends is still current. Answers come from the same snapshot cache as the gRPC
streams, so a poller and a streamer see the same versions. A body that is not a
DiscoveryRequest gets a 400 naming the problem; nothing is published before the first
snapshot, so until then polls get a 503 (an empty answer would wipe the client).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict

from aiohttp import web
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest
from google.protobuf import json_format

from xdscp.cache.node_group import node_locality
from xdscp.cache.snapshot import TypeSnapshot
from xdscp.logfmt import log_event
from xdscp.metrics import REJECTED_REQUESTS
from xdscp.server.json_view import response_dict
from xdscp.server.stream import ServerEnv
from xdscp.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE

log = logging.getLogger("xdscp.server.rest")

TYPE_OF_PATH = {"clusters": CLUSTER, "endpoints": ENDPOINT, "listeners": LISTENER, "routes": ROUTE}
_CACHED_ANSWERS = 64  # JSON answers kept; pollers of one fleet ask the same few


class RestXds:
    """The REST-JSON discovery endpoints, served on the admin HTTP server."""

    def __init__(self, env: ServerEnv) -> None:
        self.env = env
        self._answers: OrderedDict[tuple[str, str, frozenset[str]], bytes] = OrderedDict()
        self.polls = 0  # answered with 200 or 304, for tests and logs

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v3/discovery:{kind}", self.handle)]

    async def handle(self, request: web.Request) -> web.Response:
        type_url = TYPE_OF_PATH.get(request.match_info["kind"])
        if type_url is None:
            return _error(404, f"no such discovery type; serve one of {', '.join(sorted(TYPE_OF_PATH))}")
        try:
            req = json_format.Parse(await request.read(), DiscoveryRequest(), ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError, ValueError) as e:
            return _error(400, f"not a JSON DiscoveryRequest: {e}")
        if req.type_url and req.type_url != type_url:
            return _error(400, f"type_url {req.type_url!r} posted to the endpoint for {type_url!r}")
        node_id = req.node.id if req.HasField("node") else ""
        # A poller's locality view is kept built between its polls (cache.REST_LEASE).
        snapshot = self.env.cache.lease(node_locality(req.node) if req.HasField("node") else None)
        if snapshot is None:
            return _error(503, "no configuration published yet")
        if req.HasField("error_detail"):
            log_event(log, logging.WARNING, "xds.nack", node=node_id, type=type_url, transport="rest",
                      kept_version=req.version_info, error=req.error_detail.message)
        ts = snapshot.get(type_url)
        self.polls += 1
        if req.version_info and req.version_info == ts.version:
            return web.Response(status=304)
        names = frozenset(n for n in req.resource_names if n != "*")
        wildcard = not names or "*" in req.resource_names
        body = self._answer(ts, frozenset() if wildcard else names)
        log_event(log, logging.DEBUG, "xds.response", node=node_id, type=type_url, version=ts.version,
                  transport="rest")
        return web.Response(body=body, content_type="application/json")

    def _answer(self, ts: TypeSnapshot, names: frozenset[str]) -> bytes:
        """The JSON DiscoveryResponse for ``names`` (empty: every resource), built once per version."""
        key = (ts.type_url, ts.version, names)
        hit = self._answers.get(key)
        if hit is not None:
            self._answers.move_to_end(key)
            return hit
        if not names:
            entries = ts.sotw_body()
        else:
            chosen = [ts.resources.get(n) or self.env.placeholder(ts.type_url, n) for n in sorted(names)]
            entries = b"".join(r.sotw_entry for r in chosen if r is not None)
        answer = json.dumps(response_dict(ts, entries), separators=(",", ":")).encode()
        self._answers[key] = answer
        if len(self._answers) > _CACHED_ANSWERS:
            self._answers.popitem(last=False)
        return answer


def _error(status: int, message: str) -> web.Response:
    if 400 <= status < 500:
        REJECTED_REQUESTS.labels("rest").inc()
    return web.json_response({"error": message}, status=status)
