"""The control plane's configuration file (YAML), validated with pydantic."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xdscp.addresses import split_host_port
from xdscp.cache.node_group import node_grouper
from xdscp.credentials import check_hash_format
from xdscp.documents import load_document
from xdscp.errors import ConfigError, DocumentError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _optional_address(v: str | None) -> str | None:
    """``host:port`` or unset; ValueError naming the problem otherwise."""
    if v is not None:
        split_host_port(v)
    return v


class _Address(_Section):
    address: str

    @field_validator("address")
    @classmethod
    def _valid_address(cls, v: str) -> str:
        split_host_port(v)
        return v


class XdsTlsConfig(_Section):
    """TLS on the xDS port; ``client_ca_file`` makes it mTLS (clients need a certificate from it).
    The files are re-read when they change, without dropping connections."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


class XdsLimitsConfig(_Section):
    """Bounds that keep one client (or a storm) from taking the server down; going past one
    ends the stream with RESOURCE_EXHAUSTED instead of queueing."""

    max_streams: int = Field(default=100_000, ge=1)
    max_names: int = Field(default=200_000, ge=1)  # resource names one stream may subscribe to, per type
    max_requests_per_second: float = Field(default=100.0, gt=0)  # per stream, burst of twice that
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # Localities (node.locality region/zone) served their own prioritised assignments at
    # once; nodes of further localities get the assignments prioritised by source only.
    max_localities: int = Field(default=1000, ge=1)


class XdsConfig(_Address):
    address: str = "127.0.0.1:18000"
    # How served Clusters/Listeners fetch EDS/RDS: over ADS, or (for bootstraps without
    # ADS) per-type streams to the bootstrap's static cluster ``xds_cluster``, or (rest)
    # REST-JSON polls of it every ``rest_refresh_delay`` seconds.
    config_source: Literal["ads", "grpc", "delta_grpc", "rest"] = "ads"
    xds_cluster: str = "xdscp"
    rest_refresh_delay: float = Field(default=1.0, ge=0.05, le=3600)
    # Seconds to gather a burst of registry changes into one push (0: push each at once).
    debounce: float = Field(default=0.003, ge=0, le=5)
    # With a longer debounce_max, the window slides: each change arriving in it waits another
    # ``debounce`` for more, up to ``debounce_max`` after the first. Default: a fixed window.
    debounce_max: float | None = Field(default=None, ge=0, le=60)
    # Processes serving the xDS port (SO_REUSEPORT). One owns the sources; the others
    # follow its cache over loopback and only fan out, so streams spread over cores.
    workers: int = Field(default=1, ge=1, le=64)
    # On SIGTERM: seconds to end every stream (UNAVAILABLE, so clients reconnect elsewhere)
    # and exit. Streams end as soon as their in-flight response is written.
    shutdown_grace: float = Field(default=5.0, ge=0, le=600)
    # Services that do not set locality_failover: whether each Envoy gets their endpoints
    # prioritised by distance from its node.locality (same zone, then region, then the rest).
    locality_failover: bool = False
    tls: XdsTlsConfig | None = None
    limits: XdsLimitsConfig = XdsLimitsConfig()


class AuthorizationRuleConfig(_Section):
    """A client identity (glob on a certificate SAN such as a SPIFFE ID, or ``token:<name>``)
    and the node ids and node groups (globs) it may claim."""

    identity: str = Field(min_length=1)
    nodes: list[str] = Field(default=["*"], min_length=1)
    groups: list[str] = Field(default=["*"], min_length=1)


class AuthorizationConfig(_Section):
    """Who may claim which node. No rules: anyone may (fine on loopback only)."""

    tokens: dict[str, str] = {}  # name -> bearer token (gRPC metadata ``authorization: Bearer <token>``)
    rules: list[AuthorizationRuleConfig] = []

    @field_validator("tokens")
    @classmethod
    def _tokens_not_empty(cls, v: dict[str, str]) -> dict[str, str]:
        for name, token in v.items():
            if len(token) < 16:
                raise ValueError(f"token {name!r} is shorter than 16 characters")
        return v


class AdminTlsConfig(_Section):
    cert_file: Path
    key_file: Path


class AdminUserConfig(_Section):
    """A user who logs in as Nacos SDKs do (username and password) for an expiring token."""

    username: str = Field(min_length=1, max_length=128)
    password_hash: str  # pbkdf2_sha256$...: made by ``xdscp hash-password``, never the password
    write: bool = False  # may register, update and deregister; every user may read

    @field_validator("password_hash")
    @classmethod
    def _valid_hash(cls, v: str) -> str:
        return check_hash_format(v)


class AdminConfig(_Address):
    address: str = "127.0.0.1:19000"
    # Set: registering, updating and deregistering through the admin API need this token
    # (Authorization: Bearer ..., or Nacos' accessToken); reading does not.
    write_token: str | None = Field(default=None, min_length=16)
    # Set: Nacos auth. Users log in (/nacos/v1/auth/login, /nacos/v3/auth/user/login) and
    # send the token they get; the Nacos APIs (HTTP and gRPC) then need one to read too.
    users: list[AdminUserConfig] = []
    token_ttl: int = Field(default=18000, ge=60, le=30 * 86400)  # seconds; Nacos' default
    # Signs login tokens; replicas given the same secret accept each other's tokens.
    # Unset: a random one per process (tokens are good on that process only).
    token_secret: str | None = Field(default=None, min_length=32)
    # HTTPS on both admin addresses (certificate and key, PEM; relative to the config file).
    tls: AdminTlsConfig | None = None
    # Set: the same endpoints, minus everything that changes state, also served here: expose
    # this one (dashboards, xdscp status, REST-JSON pollers) and keep ``address`` private.
    read_only_address: str | None = None

    _valid_read_only = field_validator("read_only_address")(classmethod(lambda cls, v: _optional_address(v)))


class ListenerConfig(_Section):
    name: str = "ingress_http"
    address: str = "0.0.0.0"
    port: int = Field(default=10000, ge=1, le=65535)
    route_config_name: str | None = None
    # true: Envoy learns each service on its first request (VHDS by Host, on-demand CDS),
    # instead of being sent every cluster and virtual host. Needs Delta ADS
    # (envoy/bootstrap-on-demand.yaml): see docs/envoy-bootstraps.md.
    on_demand: bool = False
    # On demand: how long a request waits for its cluster's discovery before Envoy answers
    # 503 (the on_demand filter's on-demand CDS timeout).
    on_demand_timeout: float = Field(default=5.0, gt=0, le=300)


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class McpConfig(_Section):
    """MCP-over-xDS for Istio and Higress: services as ServiceEntry (and WorkloadEntry)."""

    # Off by default: it doubles translation work, which Envoy-only fleets do not need.
    enabled: bool = False
    namespace: str = "istio-system"  # the Istio namespace the resources are put in
    host_suffix: str = "xdscp"  # hosts are <name>.<group>.<namespace>.<suffix>
    service_port: int = Field(default=80, ge=1, le=65535)
    workload_entries: bool = False  # endpoints as WorkloadEntry resources, not inline

    @field_validator("namespace")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if not _DNS_LABEL.match(v):
            raise ValueError(f"{v!r} is not a Kubernetes namespace name (a lowercase DNS label)")
        return v

    @field_validator("host_suffix")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        if not all(_DNS_LABEL.match(label) for label in v.split(".")):
            raise ValueError(f"{v!r} is not a lowercase DNS name")
        return v


class _SourceSection(_Section):
    """What every source has: a name, the Envoy priority of its instances, and whether
    the first snapshot waits for it."""

    name: str | None = None
    # 0 = preferred. Instances from a source with priority 1 get traffic only while the
    # priority-0 ones cannot take it (Envoy priority failover), e.g. a remote cluster.
    priority: int = Field(default=0, ge=0, le=100)
    # true: nothing is published until this source has loaded once, however long that
    # takes (a restart never serves a world without its services). false: after
    # startup_grace seconds without it, the other sources are published, /readyz names it
    # as missing, and its services join when it loads.
    required: bool = True
    startup_grace: float = Field(default=10.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _grace_needs_optional(self) -> _SourceSection:
        if self.required and "startup_grace" in self.model_fields_set:
            raise ValueError("startup_grace applies only with required: false (a required source is waited for "
                             "until it loads)")
        return self


class FileSourceConfig(_SourceSection):
    kind: Literal["file"]
    path: Path
    poll_interval: float = Field(default=0.02, gt=0, le=60)


def _check_http_urls(urls: list[str]) -> list[str]:
    for url in urls:
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return urls


def _below_root(path: str) -> str:
    """An etcd prefix or a ZooKeeper root: absolute, and not the whole tree."""
    if not path.startswith("/") or path.rstrip("/") == "":
        raise ValueError(f"{path!r} must start with '/' and not be '/' itself")
    return path


class HttpSourceConfig(_SourceSection):
    """``kind: http``: poll a JSON document ``{"services": [...]}`` (the registry file schema)."""

    kind: Literal["http"]
    url: str
    interval: float = Field(default=1.0, gt=0, le=3600)
    timeout: float = Field(default=5.0, gt=0, le=300)
    headers: dict[str, str] = {}  # e.g. Authorization

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return _check_http_urls([v])[0]


class EtcdAccessConfig(_Section):
    """How to reach an etcd cluster (its v3 JSON gateway, on the client port)."""

    endpoints: list[str] = Field(default=["http://127.0.0.1:2379"], min_length=1)
    timeout: float = Field(default=5.0, gt=0, le=300)
    username: str | None = None
    password: str | None = None

    @field_validator("endpoints")
    @classmethod
    def _http_urls(cls, v: list[str]) -> list[str]:
        return _check_http_urls(v)


class EtcdSourceConfig(_SourceSection, EtcdAccessConfig):
    """``kind: etcd``: instances as JSON values under ``prefix`` (see xdscp.sources.etcd.source)."""

    kind: Literal["etcd"]
    prefix: str = "/xdscp/services"

    _absolute = field_validator("prefix")(classmethod(lambda cls, v: _below_root(v)))


class EmbeddedEtcdConfig(EtcdAccessConfig):
    """Where replicas of the embedded registry keep their shared state (``store: etcd``)."""

    prefix: str = "/xdscp/registry"
    # The replica holding leadership runs the active checks; another takes over within
    # about this long after it dies.
    leader_ttl: int = Field(default=5, ge=2, le=300)
    # Instances registered over Nacos gRPC connections to a replica are bound to one lease
    # that replica renews: if it dies, they expire this long after (its clients register
    # them again on another replica).
    connection_lease_ttl: int = Field(default=10, ge=2, le=300)

    _absolute = field_validator("prefix")(classmethod(lambda cls, v: _below_root(v)))


class NacosSourceConfig(_SourceSection):
    """``kind: nacos``: the services of some groups of one Nacos namespace (see xdscp.sources.nacos.source)."""

    kind: Literal["nacos"]
    servers: list[str] = Field(default=["http://127.0.0.1:8848"], min_length=1)
    namespace: str = "public"
    groups: list[str] = Field(default=["DEFAULT_GROUP"], min_length=1)
    api_version: Literal["auto", "v1", "v2", "v3"] = "auto"
    # http: poll every interval. grpc: subscribe over Nacos 2.x/3.x's gRPC port and apply
    # its pushes at once (service lists are still read every interval).
    transport: Literal["http", "grpc"] = "http"
    grpc_port: int | None = Field(default=None, ge=1, le=65535)  # default: the HTTP port + 1000
    interval: float = Field(default=1.0, gt=0, le=3600)
    timeout: float = Field(default=5.0, gt=0, le=300)
    username: str | None = None
    password: str | None = None
    access_token: str | None = None

    @field_validator("servers")
    @classmethod
    def _http_urls(cls, v: list[str]) -> list[str]:
        return _check_http_urls(v)


class ConsulSourceConfig(_SourceSection):
    """``kind: consul``: every service of one datacenter (see xdscp.sources.consul)."""

    kind: Literal["consul"]
    address: str = "http://127.0.0.1:8500"
    datacenter: str | None = None
    token: str | None = None  # ACL token, sent as X-Consul-Token
    warning_as: Literal["healthy", "unhealthy"] = "healthy"
    wait: float = Field(default=30.0, gt=0, le=600)  # blocking query wait
    timeout: float = Field(default=5.0, gt=0, le=300)

    @field_validator("address")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return _check_http_urls([v])[0]


class ZooKeeperSourceConfig(_SourceSection):
    """``kind: zookeeper``: Dubbo providers under ``root`` (see xdscp.sources.zookeeper.source)."""

    kind: Literal["zookeeper"]
    hosts: list[str] = Field(default=["127.0.0.1:2181"], min_length=1)
    root: str = "/dubbo"
    namespace: str = "public"  # the xdscp namespace of the interfaces found
    session_timeout: float = Field(default=10.0, ge=1, le=600)
    timeout: float = Field(default=5.0, gt=0, le=300)
    username: str | None = None  # digest auth
    password: str | None = None

    @field_validator("hosts")
    @classmethod
    def _host_ports(cls, v: list[str]) -> list[str]:
        for hp in v:
            split_host_port(hp)  # a chroot goes in root, not here
        return v

    _absolute = field_validator("root")(classmethod(lambda cls, v: _below_root(v)))


class InstanceCheckConfig(_Section):
    """How the embedded registry probes persistent instances."""

    enabled: bool = True
    type: Literal["tcp", "http"] = "tcp"
    path: str = "/health"
    expected_statuses: list[int] = [200]
    interval: float = Field(default=2.0, gt=0, le=3600)
    timeout: float = Field(default=1.0, gt=0, le=60)
    healthy_threshold: int = Field(default=2, ge=1, le=100)
    unhealthy_threshold: int = Field(default=2, ge=1, le=100)


class NacosGrpcConfig(_Section):
    """The embedded registry's Nacos 2.x/3.x gRPC face, where Nacos SDKs register and subscribe."""

    enabled: bool = True
    # host:port. Unset: the admin address's host, at its port + 1000, where a Nacos SDK
    # given the admin address looks (Nacos' own convention).
    address: str | None = None
    # Nacos' own limit on one message (10 MiB); a bigger one is refused, the connection stays.
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=4096)
    max_connections: int = Field(default=20_000, ge=1)
    max_subscriptions: int = Field(default=10_000, ge=1)  # services one connection may subscribe to
    # Per connection, with a burst of twice that; past it a request is answered with
    # Nacos' OVER_THRESHOLD error (503).
    max_requests_per_second: float = Field(default=200.0, gt=0)
    # Client detection as Nacos does it: every ``detection_interval`` seconds, a connection
    # silent for ``keepalive_time`` is sent a ClientDetectionRequest; unanswered within
    # ``detection_timeout``, it is closed and its instances removed.
    keepalive_time: float = Field(default=20.0, gt=0, le=3600)
    detection_timeout: float = Field(default=5.0, gt=0, le=600)
    detection_interval: float = Field(default=3.0, gt=0, le=600)
    # TLS (with client_ca_file: mTLS). Unset: the admin address's TLS (admin.tls) when it
    # has one, so SDK access tokens never cross the network in clear; else plain text.
    tls: XdsTlsConfig | None = None

    _valid_address = field_validator("address")(classmethod(lambda cls, v: _optional_address(v)))


class EmbeddedSourceConfig(_SourceSection):
    kind: Literal["embedded"]
    # sqlite: one process, state in ``database``. etcd: replicas share the state in ``etcd``.
    store: Literal["sqlite", "etcd"] = "sqlite"
    # SQLite file for service settings and persistent instances; null keeps nothing.
    database: Path | None = Path("xdscp-registry.db")
    etcd: EmbeddedEtcdConfig | None = None
    heartbeat_unhealthy_after: float = Field(default=15.0, gt=0)
    heartbeat_remove_after: float = Field(default=30.0, gt=0)
    expiry_interval: float = Field(default=0.5, gt=0, le=60)
    instance_check: InstanceCheckConfig = InstanceCheckConfig()
    nacos_grpc: NacosGrpcConfig = NacosGrpcConfig()

    @model_validator(mode="after")
    def _removal_after_unhealthy(self) -> EmbeddedSourceConfig:
        if self.heartbeat_remove_after < self.heartbeat_unhealthy_after:
            raise ValueError("heartbeat_remove_after must not be shorter than heartbeat_unhealthy_after")
        if self.store == "etcd" and self.etcd is None:
            raise ValueError("store: etcd needs an etcd section (endpoints, prefix)")
        if self.store == "sqlite" and self.etcd is not None:
            raise ValueError("an etcd section is only used with store: etcd")
        return self


SourceConfig = Annotated[
    FileSourceConfig | EmbeddedSourceConfig | HttpSourceConfig | EtcdSourceConfig | NacosSourceConfig
    | ConsulSourceConfig | ZooKeeperSourceConfig,
    Field(discriminator="kind"),
]


def _default_sources() -> list[SourceConfig]:
    return [EmbeddedSourceConfig(kind="embedded")]


class Config(_Section):
    """Root of the config file; every field has a default, so ``{}`` is a valid config."""

    xds: XdsConfig = XdsConfig()
    admin: AdminConfig = AdminConfig()
    listener: ListenerConfig = ListenerConfig()
    mcp: McpConfig = McpConfig()
    authorization: AuthorizationConfig = AuthorizationConfig()
    node_group_by: str = "cluster"
    # No sources given: the embedded registry, so xdscp works with nothing else installed.
    sources: list[SourceConfig] = Field(default_factory=lambda: _default_sources())

    @field_validator("node_group_by")
    @classmethod
    def _valid_grouping(cls, v: str) -> str:
        try:
            node_grouper(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return v

    def source_priorities(self) -> dict[str, int]:
        return {n: s.priority for n, s in zip(self.source_names(), self.sources, strict=True)}

    def optional_sources(self) -> dict[str, float]:
        """The sources with ``required: false``, and their startup grace in seconds."""
        return {n: s.startup_grace for n, s in zip(self.source_names(), self.sources, strict=True) if not s.required}

    def source_names(self) -> list[str]:
        """Each source's name: its own, or ``<kind>-<index>``; names must be unique."""
        names = [s.name or f"{s.kind}-{i}" for i, s in enumerate(self.sources)]
        if len(set(names)) != len(names):
            raise ConfigError(f"source names must be unique: {names}")
        return names

    @model_validator(mode="after")
    def _one_embedded_registry(self) -> Config:
        if sum(1 for s in self.sources if s.kind == "embedded") > 1:
            raise ValueError("at most one embedded source: the registration API writes to it")
        return self


def load_config(path: Path) -> Config:
    """Read and validate a config file; relative source paths are relative to it."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        cfg = load_document(data, str(path), Config)
    except DocumentError as e:
        raise ConfigError(str(e)) from None
    if cfg.admin.tls is not None:
        cfg.admin.tls.cert_file = path.parent / cfg.admin.tls.cert_file
        cfg.admin.tls.key_file = path.parent / cfg.admin.tls.key_file
    grpc_tls = [s.nacos_grpc.tls for s in cfg.sources if isinstance(s, EmbeddedSourceConfig)]
    for tls in [cfg.xds.tls, *grpc_tls]:
        if tls is not None:
            tls.cert_file, tls.key_file = path.parent / tls.cert_file, path.parent / tls.key_file
            tls.client_ca_file = path.parent / tls.client_ca_file if tls.client_ca_file is not None else None
    for src in cfg.sources:
        if isinstance(src, FileSourceConfig) and not src.path.is_absolute():
            src.path = (path.parent / src.path).resolve()
        elif isinstance(src, EmbeddedSourceConfig) and src.database is not None and not src.database.is_absolute():
            src.database = (path.parent / src.database).resolve()
    cfg.source_names()
    return cfg
