"""VHDS names: a virtual host is asked for by the Host a request carried.

Envoy subscribes to ``<route configuration>/<Host header>`` (``ingress_http/echo:10000``)
when a request's Host has no virtual host yet. xdscp serves one virtual host per service,
named ``<route configuration>/<service>`` with domains ``service`` and ``service:*``, so
a requested name resolves to the service named by its Host without the port.

The answer carries the requested name as an alias of the virtual host it resolved to;
a name that resolves to nothing is answered with an entry that has the name as its alias
and no resource, which Envoy reads as "no such virtual host" (404 at once, no wait).
"""

from __future__ import annotations

from xdscp.cache import wire

_RESPONSE_RESOURCES = 2  # DeltaDiscoveryResponse.resources
_RES_NAME, _RES_ALIASES = 3, 4  # discovery.v3.Resource


def resolve(requested: str) -> str:
    """The virtual host a requested name resolves to: its Host lowercased, without a port."""
    route, sep, host = requested.partition("/")
    if not sep:
        return requested
    host = host.lower()
    if host.startswith("["):  # [v6]:port
        host = host[: host.find("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return f"{route}/{host}"


def with_aliases(delta_entry: bytes, aliases: list[str]) -> bytes:
    """A resource entry (``Resource.delta_entry``) with ``aliases`` added."""
    if not aliases:
        return delta_entry
    inner = wire.field_payload(delta_entry) + b"".join(wire.string_field(_RES_ALIASES, a) for a in aliases)
    return wire.field(_RESPONSE_RESOURCES, inner)


def namespace_marker(route_config_name: str) -> str:
    """A name inside the route configuration's VHDS namespace that no virtual host has."""
    return f"{route_config_name}/"


def unresolved(alias: str) -> bytes:
    """The entry that tells Envoy ``alias`` names no virtual host."""
    return wire.field(_RESPONSE_RESOURCES, wire.string_field(_RES_NAME, alias) + wire.string_field(_RES_ALIASES, alias))
