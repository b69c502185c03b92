"""The registry model: a Service and its Instances, whatever source they came from.

These are frozen pydantic models: validated once where data enters (a file, an API),
then shared by reference through snapshots, so an unchanged service is the same
object in the next snapshot and translation can skip it by identity.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_NAMESPACE = "public"
DEFAULT_GROUP = "DEFAULT_GROUP"

# Names as Nacos accepts them (its DefaultParamChecker): a service name is up to 512
# characters with no whitespace or control character, no CJK, no "@@", not starting with
# "@" (Dubbo's ``providers:org.demo.Api:1.0.0:`` is one); a group or namespace is letters,
# digits and ``._:-``. Envoy names are derived from them safely (xdscp.model.naming).
_NAME_RE = re.compile(r"^(?!@)(?:(?!@@)[^\s\x00-\x1f\x7f\u4e00-\u9fa5])+$")
_SCOPE_RE = re.compile(r"^[A-Za-z0-9._:-]+$")
# RFC 9110 token: what Envoy accepts as a header name (it NACKs anything else).
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

Seconds = Annotated[float, Field(gt=0, le=86400)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LbPolicy(StrEnum):
    """Envoy's cluster load-balancing policies that a service may choose."""

    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_REQUEST = "LEAST_REQUEST"
    RANDOM = "RANDOM"
    RING_HASH = "RING_HASH"
    MAGLEV = "MAGLEV"


class HealthCheck(_Frozen):
    """Active health checking that Envoy runs against every endpoint of the service."""

    type: Literal["http", "tcp"] = "http"
    path: str = "/health"
    interval: Seconds = 5.0
    timeout: Seconds = 1.0
    healthy_threshold: int = Field(default=1, ge=1, le=100)
    unhealthy_threshold: int = Field(default=2, ge=1, le=100)
    expected_statuses: tuple[int, ...] = (200,)

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, v: str) -> str:
        if not v.startswith("/") or any(c.isspace() or ord(c) < 0x20 for c in v):
            raise ValueError("must start with '/' and contain no spaces or control characters")
        return v

    @field_validator("expected_statuses")
    @classmethod
    def _statuses_are_http(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("must list at least one status")
        for code in v:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status")
        return v


class OutlierDetection(_Frozen):
    """Passive ejection of endpoints that keep failing (Envoy's outlier detection)."""

    consecutive_5xx: int = Field(default=5, ge=1)
    consecutive_gateway_failure: int | None = Field(default=None, ge=1)
    interval: Seconds = 10.0
    base_ejection_time: Seconds = 30.0
    max_ejection_percent: int = Field(default=10, ge=0, le=100)


def _header_name(v: str) -> str:
    if not _HEADER_NAME_RE.match(v):
        raise ValueError(f"{v!r} is not a valid HTTP header name")
    return v


HeaderName = Annotated[str, AfterValidator(_header_name)]


class HashPolicy(_Frozen):
    """What RING_HASH and MAGLEV hash on: a request header, or else the client address."""

    header: HeaderName | None = None


class GrayRelease(_Frozen):
    """A canary of one service: its instances whose metadata ``key`` is ``canary`` get the
    requests carrying ``header`` (equal to ``header_value`` when given) and
    ``canary_weight`` percent of the others; the ``stable`` instances get the rest."""

    key: str = "version"
    stable: str
    canary: str
    header: HeaderName | None = None
    header_value: str | None = None
    canary_weight: int = Field(default=0, ge=0, le=100)

    @model_validator(mode="after")
    def _two_subsets(self) -> GrayRelease:
        if self.stable == self.canary:
            raise ValueError("stable and canary must be different values")
        if self.header_value is not None and self.header is None:
            raise ValueError("header_value needs header")
        return self


class Instance(_Frozen):
    """One network endpoint of a service, with its registry state."""

    host: str
    port: int = Field(ge=1, le=65535)
    weight: float = Field(default=1.0, ge=0, le=10000)
    healthy: bool = True
    enabled: bool = True
    ephemeral: bool = True
    draining: bool = False
    zone: str = ""
    region: str = ""
    cluster: str = ""
    # Envoy priority: 0 is preferred; higher levels get traffic only while lower ones
    # cannot take it (failover to a remote cluster or a standby).
    priority: int = Field(default=0, ge=0, le=100)
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("host")
    @classmethod
    def _host_is_ip(cls, v: str) -> str:
        # EDS endpoints are never resolved by Envoy; a name here would be NACKed.
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address (EDS endpoints must be IPs)") from None

    _metadata_as_strings = field_validator("metadata", mode="before")(
        classmethod(lambda cls, v: _string_metadata(v))
    )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __hash__(self) -> int:  # dict fields defeat pydantic's frozen hash
        return hash((self.host, self.port))


def _string_metadata(v: Any) -> Any:
    """Registries send metadata values as numbers or booleans too; Envoy wants strings."""
    if isinstance(v, dict):
        return {str(k): _scalar_to_str(val) for k, val in v.items()}
    return v


def _scalar_to_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    raise ValueError("metadata values must be strings, numbers or booleans")


class ServiceKey(tuple[str, str, str]):
    """(namespace, group, name): the identity of a service across all sources."""

    __slots__ = ()

    def __new__(cls, namespace: str, group: str, name: str) -> ServiceKey:
        return super().__new__(cls, (namespace, group, name))

    @property
    def namespace(self) -> str:
        return self[0]

    @property
    def group(self) -> str:
        return self[1]

    @property
    def name(self) -> str:
        return self[2]

    def __repr__(self) -> str:
        return f"{self[0]}/{self[1]}/{self[2]}"


class Service(_Frozen):
    """A named set of instances plus how Envoy should balance and check them."""

    name: str
    namespace: str = DEFAULT_NAMESPACE
    group: str = DEFAULT_GROUP
    lb_policy: LbPolicy = LbPolicy.ROUND_ROBIN
    connect_timeout: Seconds = 5.0
    # Envoy's default panic threshold (50%) routes to unhealthy hosts when most are
    # down; a registry-driven gateway must not, so panic mode is off unless asked for.
    panic_threshold: float = Field(default=0.0, ge=0, le=100)
    # Nacos' protect threshold (0..1): below this healthy share, every enabled instance is
    # served as healthy rather than sending all traffic to a sliver. 0 = off.
    protect_threshold: float = Field(default=0.0, ge=0, le=1)
    # Each Envoy gets this service's endpoints prioritised by distance from its node.locality
    # (same zone first, then the region, then the rest). None: the config's
    # xds.locality_failover.
    locality_failover: bool | None = None
    health_check: HealthCheck | None = None
    outlier_detection: OutlierDetection | None = None
    hash_policy: HashPolicy | None = None
    gray: GrayRelease | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    instances: tuple[Instance, ...] = ()

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, v: str) -> str:
        if not _NAME_RE.match(v) or len(v) > 512:
            raise ValueError(
                f"{v!r} is not a valid service name (at most 512 characters, no whitespace, "
                "no '@@', not starting with '@')"
            )
        return v

    @field_validator("namespace", "group")
    @classmethod
    def _scope_is_safe(cls, v: str) -> str:
        if not _SCOPE_RE.match(v) or len(v) > 128:
            raise ValueError(f"{v!r} is not a valid namespace or group name (letters, digits and '._:-'; "
                             "at most 128 characters)")
        return v

    _metadata_as_strings = field_validator("metadata", mode="before")(
        classmethod(lambda cls, v: _string_metadata(v))
    )

    @model_validator(mode="after")
    def _unique_instances(self) -> Service:
        seen: set[tuple[str, int]] = set()
        for inst in self.instances:
            if (inst.host, inst.port) in seen:
                raise ValueError(f"instance {inst.address} is listed twice")
            seen.add((inst.host, inst.port))
        return self

    @property
    def key(self) -> ServiceKey:
        return ServiceKey(self.namespace, self.group, self.name)

    def spec_equals(self, other: Service) -> bool:
        """True when everything but the instance list is the same (the Cluster is unchanged)."""
        return self.model_dump(exclude={"instances"}) == other.model_dump(exclude={"instances"})

    def __hash__(self) -> int:
        return hash(self.key)
