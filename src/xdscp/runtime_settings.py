"""Config -> the plain settings each stage runs with, in one place.

Every setting's default is the config model's (xdscp.config), defined once; the runtime
dataclasses have none of their own. The owner process and its ``--workers`` followers
(which receive the same config sections as JSON) build their xDS server here alike.
Each source kind's settings are built here too (xdscp.sources.kinds pairs them with the
source): no source reads the config module.
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
    ConsulSourceConfig,
    EmbeddedSourceConfig,
    EtcdAccessConfig,
    EtcdSourceConfig,
    FileSourceConfig,
    HttpSourceConfig,
    InstanceCheckConfig,
    McpConfig,
    NacosGrpcConfig,
    NacosSourceConfig,
    XdsConfig,
    XdsLimitsConfig,
    XdsTlsConfig,
    ZooKeeperSourceConfig,
)
from xdscp.credentials import Credentials, User
from xdscp.server.authorization import NodePolicy, Rule
from xdscp.server.stream import StreamLimits
from xdscp.server.tls import TlsSettings, server_credentials
from xdscp.server.xds_server import XdsServerSettings
from xdscp.sources.consul import ConsulSettings
from xdscp.sources.embedded.api.nacos_grpc.server import NacosGrpcSettings
from xdscp.sources.embedded.checks import CheckSettings
from xdscp.sources.embedded.source import EmbeddedEtcdSettings, EmbeddedSettings
from xdscp.sources.etcd.client import EtcdAccess
from xdscp.sources.etcd.source import EtcdSourceSettings
from xdscp.sources.file import FileSettings
from xdscp.sources.http import HttpSettings
from xdscp.sources.nacos.settings import NacosSettings
from xdscp.sources.zookeeper.source import ZooKeeperSettings
from xdscp.translation.placeholders import missing_resource
from xdscp.translation.service_entries import McpSettings
from xdscp.translation.translator import ConfigSourceSettings, ListenerSettings, Translator


def translator(cfg: Config) -> Translator:
    lc, xds = cfg.listener, cfg.xds
    return Translator(
        ListenerSettings(lc.name, lc.address, lc.port, lc.route_config_name or lc.name, lc.on_demand,
                         lc.on_demand_timeout),
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


def tls_settings(tls: XdsTlsConfig | None) -> TlsSettings | None:
    return TlsSettings(tls.cert_file, tls.key_file, tls.client_ca_file) if tls is not None else None


def tls_credentials(tls: XdsTlsConfig | None) -> grpc.ServerCredentials | None:
    """None for plain text; ConfigError if the files cannot be used."""
    settings = tls_settings(tls)
    return server_credentials(settings) if settings is not None else None


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


# -- sources: each kind's config section -> the settings its source runs with ------------------
def file_settings(c: FileSourceConfig) -> FileSettings:
    return FileSettings(c.path, c.poll_interval)


def http_settings(c: HttpSourceConfig) -> HttpSettings:
    return HttpSettings(c.url, c.interval, c.timeout, dict(c.headers))


def consul_settings(c: ConsulSourceConfig) -> ConsulSettings:
    return ConsulSettings(c.address, c.datacenter, c.token, c.warning_as, c.wait, c.timeout)


def zookeeper_settings(c: ZooKeeperSourceConfig) -> ZooKeeperSettings:
    return ZooKeeperSettings(tuple(c.hosts), c.root, c.namespace, c.session_timeout, c.timeout, c.username,
                             c.password)


def etcd_access(c: EtcdAccessConfig) -> EtcdAccess:
    return EtcdAccess(tuple(c.endpoints), c.timeout, c.username, c.password)


def etcd_source_settings(c: EtcdSourceConfig) -> EtcdSourceSettings:
    return EtcdSourceSettings(etcd_access(c), c.prefix)


def nacos_settings(c: NacosSourceConfig) -> NacosSettings:
    return NacosSettings(tuple(c.servers), c.username, c.password, c.access_token, c.namespace, tuple(c.groups),
                         c.api_version, c.transport, c.grpc_port, c.interval, c.timeout)


def check_settings(c: InstanceCheckConfig) -> CheckSettings:
    return CheckSettings(c.enabled, c.type, c.path, frozenset(c.expected_statuses), c.interval, c.timeout,
                         c.healthy_threshold, c.unhealthy_threshold)


def nacos_grpc_settings(c: NacosGrpcConfig) -> NacosGrpcSettings:
    return NacosGrpcSettings(c.enabled, c.address, tls_settings(c.tls), c.max_message_bytes, c.max_connections,
                             c.max_subscriptions, c.max_requests_per_second, c.keepalive_time, c.detection_timeout,
                             c.detection_interval)


def embedded_settings(c: EmbeddedSourceConfig) -> EmbeddedSettings:
    etcd = (EmbeddedEtcdSettings(etcd_access(c.etcd), c.etcd.prefix, c.etcd.leader_ttl, c.etcd.connection_lease_ttl)
            if c.etcd is not None else None)
    return EmbeddedSettings(c.database, etcd, c.heartbeat_unhealthy_after, c.heartbeat_remove_after,
                            c.expiry_interval, check_settings(c.instance_check), nacos_grpc_settings(c.nacos_grpc))
