"""What the Nacos source's transports (HTTP polling, gRPC push) share: errors, and how a
Nacos host object becomes an instance record."""

from __future__ import annotations

from typing import Any


class NacosError(Exception):
    """Nacos could not be read (or said something that is not its API); nothing is applied."""


class NacosUnreachable(NacosError):
    """No answer at all (connection refused, timeout): no other API version will do better."""


class NacosLoginFailed(NacosError):
    """The credentials were refused: no other API version will do better."""


def nacos_instance(host: dict[str, Any]) -> dict[str, Any]:
    """A Nacos host object as a registry-file instance (validated later, per instance)."""
    cluster = host.get("clusterName") or ""
    return {
        "host": host.get("ip"),
        "port": host.get("port"),
        "weight": host.get("weight", 1.0),
        "healthy": host.get("healthy", host.get("valid", True)),  # "valid" in Nacos 1.x docs
        "enabled": host.get("enabled", True),
        "ephemeral": host.get("ephemeral", True),
        "cluster": "" if cluster == "DEFAULT" else cluster,
        "metadata": host.get("metadata") or {},
    }
