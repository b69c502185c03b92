"""Config sections -> what the xDS server enforces: node policy, stream limits, TLS credentials.

One translation for the owning process and for its ``--workers`` followers, which receive
the same sections as JSON, so both serve the port alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from xdscp.config import AuthorizationConfig, XdsLimitsConfig, XdsTlsConfig
from xdscp.server.authorization import NodePolicy, Rule
from xdscp.server.stream import StreamLimits
from xdscp.server.tls import TlsSettings, server_credentials


def node_policy(authz: AuthorizationConfig, extra_rules: Iterable[Rule] = (),
                extra_tokens: dict[str, str] | None = None) -> NodePolicy:
    rules = [Rule(r.identity, tuple(r.nodes), tuple(r.groups)) for r in authz.rules]
    return NodePolicy([*rules, *extra_rules], {**authz.tokens, **(extra_tokens or {})})


def stream_limits(limits: XdsLimitsConfig) -> StreamLimits:
    return StreamLimits(limits.max_streams, limits.max_names, limits.max_requests_per_second)


def tls_credentials(tls: XdsTlsConfig | None) -> grpc.ServerCredentials | None:
    """None for plain text; ConfigError if the files cannot be used."""
    if tls is None:
        return None
    return server_credentials(TlsSettings(tls.cert_file, tls.key_file, tls.client_ca_file))
