"""REST-JSON xDS (``POST /v3/discovery:<type>``) against the real admin server.

A real Envoy polling it is in test_envoy_e2e.py (the ``rest`` bootstrap); these check
the protocol edges one request at a time.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryResponse
from google.protobuf import json_format

from plane import Plane, service
from xds_client import unpack


async def post(plane: Plane, kind: str, body: Any) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{plane.cp.admin_port}/v3/discovery:{kind}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)


def as_response(doc: Any) -> DiscoveryResponse:
    return json_format.ParseDict(doc, DiscoveryResponse())


NODE = {"id": "rest-1", "cluster": "ingress"}


async def test_clusters_then_304_at_the_current_version_then_the_change(plane: Plane) -> None:
    status, doc = await post(plane, "clusters", {"node": NODE})
    assert status == 200
    resp = as_response(doc)
    assert resp.type_url.endswith("Cluster") and resp.version_info
    assert sorted(unpack(r).name for r in resp.resources) == ["api", "echo"]
    status, doc = await post(plane, "clusters", {"node": NODE, "version_info": resp.version_info})
    assert (status, doc) == (304, None)
    plane.write([service("echo", 9001), service("api", 9101), service("new", 9201)])
    await plane.wait_published(2)
    status, doc = await post(plane, "clusters", {"node": NODE, "version_info": resp.version_info})
    assert status == 200 and "new" in {unpack(r).name for r in as_response(doc).resources}


async def test_endpoints_by_name_with_an_empty_assignment_for_an_unknown_one(plane: Plane) -> None:
    status, doc = await post(plane, "endpoints", {"node": NODE, "resource_names": ["echo", "nosuch"]})
    assert status == 200
    by_name = {unpack(r).cluster_name: unpack(r) for r in as_response(doc).resources}
    assert set(by_name) == {"echo", "nosuch"} and not by_name["nosuch"].endpoints
    ports = sorted(e.endpoint.address.socket_address.port_value for loc in by_name["echo"].endpoints
                   for e in loc.lb_endpoints)
    assert ports == [9001, 9002]


async def test_bad_requests_get_a_clear_error_and_change_nothing(plane: Plane) -> None:
    published = plane.cp.publisher.published
    status, doc = await post(plane, "clusters", b"{not json")
    assert status == 400 and "not a JSON DiscoveryRequest" in doc["error"]
    status, doc = await post(plane, "clusters", {"resource_names": "echo"})  # a string, not a list
    assert status == 400
    status, doc = await post(plane, "clusters", {"type_url": "type.googleapis.com/envoy.config.route.v3.Route"})
    assert status == 400 and "posted to the endpoint" in doc["error"]
    status, doc = await post(plane, "secrets", {"node": NODE})
    assert status == 404 and "clusters" in doc["error"]
    assert plane.cp.publisher.published == published
    status, _ = await post(plane, "listeners", {"node": NODE})
    assert status == 200  # still serving
