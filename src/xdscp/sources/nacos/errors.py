"""Why the Nacos source could not read Nacos, in the kinds its transports (HTTP polling, gRPC push) tell apart."""

from __future__ import annotations

from xdscp.errors import XdscpError


class NacosError(XdscpError):
    """Nacos could not be read (or said something that is not its API); nothing is applied."""


class NacosUnreachable(NacosError):
    """No answer at all (connection refused, timeout): no other API version will do better."""


class NacosLoginFailed(NacosError):
    """The credentials were refused: no other API version will do better."""
