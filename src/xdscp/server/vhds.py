"""VHDS names and subscriptions: a virtual host is asked for by the Host a request carried.

Envoy subscribes to ``<route configuration>/<Host header>`` (``ingress_http/echo:10000``)
when a request's Host has no virtual host yet. xdscp serves one virtual host per service,
named ``<route configuration>/<service>`` with domains ``service`` and ``service:*``, so
a requested name resolves to the service named by its Host without the port.

The answer carries the requested name as an alias of the virtual host it resolved to;
a name that resolves to nothing is answered with an entry that has the name as its alias
and no resource, which Envoy reads as "no such virtual host" (404 at once, no wait).

For an Envoy, VHDS is never a wildcard: its first VHDS request names nothing, and after a
reconnect it names "*" beside the Hosts it holds. Both mean the route configuration's
namespace, which xdscp answers only by Host, so a reconnect is not sent every virtual host
of the registry. (A workers' relay, which mirrors every virtual host for its workers to
answer from, subscribes as it does to any type: see ``DeltaStream.new_state``.)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest

from xdscp.cache import wire
from xdscp.cache.resource import Resource
from xdscp.server.delta_subscription import ABSENT, DeltaSubscription

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


@dataclass(slots=True)
class VhdsSubscription(DeltaSubscription):
    """A Delta subscription to virtual hosts by Host. Its names are bounded by the services
    and by a cap on unknown Hosts (``forget_oldest_unknown``), not by the stream's limit."""

    aliases: dict[str, set[str]] = field(default_factory=dict)  # virtual host -> the names asked for it
    unknown: dict[str, None] = field(default_factory=dict)  # asked for, no such host yet (oldest first)

    counts_names: ClassVar[bool] = False
    shared_first_answer: ClassVar[bool] = False  # it carries aliases, and the namespace's marker

    def begin(self, req: DeltaDiscoveryRequest) -> None:
        """Never a wildcard. On a reconnect, a name Envoy holds with no version is one it was
        told has no virtual host (an unknown Host, or the namespace's marker): it still has
        none unless a service of that name came since."""
        held = req.initial_resource_versions
        self.overrides.update({name: version or ABSENT for name, version in held.items()})
        self.resumed = bool(held)
        self.full = True

    def names_in(self, req: DeltaDiscoveryRequest) -> tuple[set[str], set[str]]:
        """Each name subscribes to the virtual host it resolves to; "*" to nothing more."""
        subscribe: set[str] = set()
        for requested in req.resource_names_subscribe:
            if requested == "*":
                continue
            name = resolve(requested)
            self.aliases.setdefault(name, set()).add(requested)
            subscribe.add(name)
            if self.overrides.get(name) == ABSENT:  # held as unknown across a reconnect
                self.unknown[name] = None
        return subscribe, {resolve(n) for n in req.resource_names_unsubscribe if n != "*"}

    def tell_unknown(self, name: str) -> bool:
        self.gone.add(name)
        self.unknown[name] = None
        return True

    def sending(self, name: str) -> None:
        self.gone.discard(name)
        self.unknown.pop(name, None)

    def entries(self, send: list[Resource], unknown: list[str], namespaces: Iterable[str]) -> list[bytes]:
        """Each virtual host with the names it was asked for by, and each unknown name
        answered as such; on the first answer, the namespaces' markers: Envoy's VHDS
        watches each route configuration's namespace and finishes its initialization only
        on an update inside it, so it is told there is nothing there yet."""
        body = [with_aliases(r.delta_entry, sorted(self.aliases.get(r.name, ()))) for r in send]
        body += [unresolved(alias) for name in unknown for alias in sorted(self.aliases.get(name, {name}))]
        # An alias answers the request that asked by it, once: later pushes carry none, and
        # Hosts that vary only by port or case cannot grow what every push repeats.
        for name in (*(r.name for r in send), *unknown):
            self.aliases.pop(name, None)
        if self.held is None:
            body += [unresolved(namespace_marker(route)) for route in sorted(namespaces)]
        return body

    def forget_oldest_unknown(self, limit: int) -> frozenset[str]:
        """Past ``limit`` unknown Hosts, the oldest are no longer watched for; what was dropped."""
        excess = len(self.unknown) - limit
        if excess <= 0:
            return frozenset()
        oldest = frozenset(itertools.islice(self.unknown, excess))
        for name in oldest:
            del self.unknown[name]
            self.aliases.pop(name, None)
            self.gone.discard(name)
        return oldest
