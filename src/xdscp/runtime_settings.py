"""Config -> the plain settings each stage runs with, in one place.

Every setting's default is the config model's (xdscp.config), defined once; the runtime
dataclasses have none of their own. The owner process and its ``--workers`` followers
(which receive the same config sections as JSON) build their xDS server here alike.
Sources take their own config section (xdscp.sources.kinds).
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from xdscp.cache.cache import Localities, LocalityViews, SnapshotCache
from xdscp.cache.node_group import node_grouper
from xdscp.config import (
    AdminConfig,
    AuthorizationConfig,
    Config,
    McpConfig,
    XdsConfig,
    XdsLimitsConfig,
    XdsTlsConfig,
)
from xdscp.credentials import Credentials, User
from xdscp.server.authorization import NodePolicy, Rule
from xdscp.server.stream import StreamLimits
from xdscp.server.tls import TlsSettings, server_credentials
from xdscp.server.xds_server import XdsServerSettings
from xdscp.translation.placeholders import missing_resource
from xdscp.translation.service_entries import McpSettings
from xdscp.translation.translator import ConfigSourceSettings, ListenerSettings, Translator


def translator(cfg: Config) -> Translator:
    lc, xds = cfg.listener, cfg.xds
    return Translator(
        ListenerSettings(lc.name, lc.address, lc.port, lc.route_config_name or lc.name),
        ConfigSourceSettings(xds.config_source, xds.xds_cluster, xds.rest_refresh_delay),
        mcp_settings(cfg.mcp) if cfg.mcp.enabled else None,
        locality_failover=xds.locality_failover,
    )


def snapshot_cache(xds: XdsConfig, views: LocalityViews) -> SnapshotCache:
    """The cache, with ``views`` making each locality's assignments (the owner's translator,
    a worker's relays)."""
    return SnapshotCache(Localities(views, xds.limits.max_localities))


def mcp_settings(mcp: McpConfig) -> McpSettings:
    return McpSettings(mcp.namespace, mcp.host_suffix, mcp.service_port, mcp.workload_entries)


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


def xds_server_settings(xds: XdsConfig, policy: NodePolicy, node_group_by: str,
                        address: str | None = None) -> XdsServerSettings:
    """``address``: where to serve, when not ``xds.address`` (a follower is told the port)."""
    return XdsServerSettings(
        address=address or xds.address,
        credentials=tls_credentials(xds.tls),
        grouper=node_grouper(node_group_by),
        policy=policy,
        limits=stream_limits(xds.limits),
        max_message_bytes=xds.limits.max_message_bytes,
        reuse_port=xds.workers > 1,
        placeholder=missing_resource,
    )


def credentials(admin: AdminConfig) -> Credentials:
    """Who may read and write the registry (admin write token, Nacos users)."""
    return Credentials(admin.write_token, [User(u.username, u.password_hash, u.write) for u in admin.users],
                       admin.token_ttl, admin.token_secret)
