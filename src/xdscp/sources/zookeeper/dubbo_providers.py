"""Dubbo provider URLs (the znodes under ``/dubbo/<interface>/providers``) as service records.

A Dubbo provider registers itself as one ephemeral znode whose name is its URL,
URL-encoded::

    dubbo%3A%2F%2F10.0.0.1%3A20880%2Forg.demo.DemoService%3Fversion%3D1.0.0%26weight%3D100...

The mapping, documented in docs/registries.md ("ZooKeeper / Dubbo"):

* the interface is the service name; the provider's ``group`` parameter is the service
  group (none: ``DEFAULT_GROUP``); the source's ``namespace`` is the namespace. So
  ``org.demo.DemoService`` in group ``blue`` is the cluster
  ``org.demo.DemoService.blue.public``.
* every version of an interface is one service; ``version`` stays in the instance
  metadata, where a gray release (``gray: {key: version, ...}``) or a subset can split it.
* ``weight`` (Dubbo's default 100) is the endpoint weight; ``enabled=false`` or
  ``disabled=true`` takes the instance out of rotation; a live znode means healthy.
* the other parameters become instance metadata, but for the ones that change on every
  restart or only make the resource bigger (``timestamp``, ``pid``, ``methods``...), so
  a provider restart does not push a new endpoint version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from xdscp.model.service import DEFAULT_GROUP

DUBBO_DEFAULT_WEIGHT = 100

# Parameters kept out of endpoint metadata: volatile, bulky, or mapped to a field.
_NOT_METADATA = frozenset({
    "timestamp", "pid", "methods", "interface", "anyhost", "side", "category", "generic",
    "deprecated", "dynamic", "bind.ip", "bind.port", "weight", "enabled", "disabled", "group",
    "background", "service-name-mapping", "register", "metadata-type", "threads", "qos.enable",
})


@dataclass(slots=True)
class ProviderRecords:
    """Service records (the registry file's schema) of one interface, and the entries dropped."""

    services: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def provider_records(interface: str, znodes: Iterable[str], namespace: str) -> ProviderRecords:
    """One record per group that has providers, plus the default group's always.

    The default group's service exists, empty, while the interface has no provider in it:
    deregistering the last provider empties its endpoints instead of leaving the cluster
    to vanish; a service that is only there because of an earlier provider would make
    two replicas with different histories disagree, so other groups come and go with
    their providers.
    """
    out = ProviderRecords()
    groups: dict[str, list[dict[str, Any]]] = {DEFAULT_GROUP: []}
    for znode in sorted(znodes):
        try:
            group, instance = _provider(interface, znode)
        except ValueError as e:
            out.problems.append(f"{interface}/providers/{znode[:200]}: {e}; ignored")
            continue
        if instance is not None:
            groups.setdefault(group, []).append(instance)
    for group in sorted(groups):
        out.services.append({"name": interface, "group": group, "namespace": namespace,
                             "instances": groups[group]})
    return out


def _provider(interface: str, znode: str) -> tuple[str, dict[str, Any] | None]:
    """The group and instance record of one provider znode (None: not a provider)."""
    url = urlsplit(unquote(znode))
    if not url.scheme or not url.netloc:
        raise ValueError("not a provider URL (want protocol://host:port/interface?...)")
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    if params.get("side", "provider") != "provider" or params.get("category", "providers") != "providers":
        return "", None  # a consumer or a configurator in the wrong folder: not an endpoint
    try:
        port = url.port
    except ValueError:
        raise ValueError(f"the port of {url.netloc!r} is not a number") from None
    if port is None:
        raise ValueError(f"{url.netloc!r} has no port")
    weight = params.get("weight", str(DUBBO_DEFAULT_WEIGHT))
    metadata = {k: v for k, v in params.items() if k not in _NOT_METADATA}
    metadata["protocol"] = url.scheme
    instance: dict[str, Any] = {
        "host": url.hostname or "",
        "port": port,
        "weight": weight,
        "enabled": params.get("enabled", "true") != "false" and params.get("disabled", "false") != "true",
        "metadata": metadata,
    }
    return params.get("group") or DEFAULT_GROUP, instance
