"""A TypeSnapshot as a DiscoveryResponse in JSON: for REST-JSON polls and /debug/config_dump."""

from __future__ import annotations

from typing import Any

from envoy.service.discovery.v3.discovery_pb2 import DiscoveryResponse
from google.protobuf import json_format

from xdscp.cache import wire
from xdscp.cache.snapshot import TypeSnapshot
from xdscp.server.sotw import encode_response
from xdscp.server.stream import CONTROL_PLANE_ID

_CONTROL_PLANE = wire.field(6, wire.string_field(1, CONTROL_PLANE_ID))  # DiscoveryResponse.control_plane


def response_dict(ts: TypeSnapshot, entries: bytes | None = None) -> dict[str, Any]:
    """The DiscoveryResponse carrying ``entries`` (default: every resource) as a JSON-ready dict.

    Decoding the cached bytes, rather than the Python messages, shows exactly what the
    wire carries, relayed resources (which have no message) included.
    """
    body = ts.sotw_body() if entries is None else entries
    raw = encode_response(ts.version, body, ts.type_url, ts.version, _CONTROL_PLANE)
    return dict(json_format.MessageToDict(DiscoveryResponse.FromString(raw)))
