"""Incremental translation of the registry view into a cache Snapshot.

Per service, the Cluster depends only on the service's settings and the
ClusterLoadAssignment only on its instances, so a one-instance change re-serializes one
ClusterLoadAssignment and nothing else. A service that fails to translate keeps its
previous resources (last known good) and is reported in ``errors``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from xdscp.cache.resource import Resource
from xdscp.cache.snapshot import Snapshot, TypeSnapshot
from xdscp.errors import TranslationError
from xdscp.logfmt import log_event
from xdscp.metrics import PROTECT_THRESHOLD_ACTIVE
from xdscp.model.naming import cluster_name
from xdscp.model.service import Service, ServiceKey
from xdscp.translation.clusters import build_cluster
from xdscp.translation.config_sources import ConfigSourceMode, build_config_source
from xdscp.translation.endpoints import build_load_assignment, protection_active
from xdscp.translation.istio_traffic import build_traffic_rules
from xdscp.translation.listeners import build_listener
from xdscp.translation.locality_endpoints import LocalityEndpoints
from xdscp.translation.routes import (
    build_vhds_route_configuration,
    build_vhds_virtual_host,
    build_virtual_host,
    route_configuration_payload,
    vhds_name,
)
from xdscp.translation.service_entries import McpSettings, build_service_entries, istio_host
from xdscp.type_urls import CLUSTER, ENDPOINT, LISTENER, MCP_TYPES, ROUTE, VIRTUAL_HOST

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    """The one HTTP ingress listener every node is served (defaults: config's ``listener``)."""

    name: str
    address: str
    port: int
    route_config_name: str
    on_demand: bool  # VHDS and on-demand CDS (config's ``listener.on_demand``)
    on_demand_timeout: float  # seconds a request waits for its cluster's discovery


@dataclass(frozen=True, slots=True)
class ConfigSourceSettings:
    """How served resources point Envoy at their EDS/RDS: ADS, or per-type streams (defaults: config's ``xds``)."""

    mode: ConfigSourceMode
    xds_cluster: str
    rest_refresh_delay: float


@dataclass(frozen=True, slots=True)
class _Translated:
    service: Service
    name: str
    cluster: Resource
    endpoints: Resource
    vhost: bytes | None  # its virtual host, serialized, the route configuration joined from these (None: on demand)
    vhds: Resource | None  # on demand: the virtual host as VHDS serves it
    entries: tuple[Resource, ...]  # Istio: ServiceEntry (+ WorkloadEntries); empty with MCP off
    rules: tuple[Resource, ...]  # Istio: DestinationRule (+ VirtualService); empty with MCP off

    @property
    def mcp(self) -> tuple[Resource, ...]:
        return self.entries + self.rules


class Translator:
    """Keeps the last translation of every service and evolves the snapshot from it."""

    def __init__(self, listener: ListenerSettings, sources: ConfigSourceSettings,
                 mcp: McpSettings | None = None, *, locality_failover: bool = False) -> None:
        """``locality_failover``: for services that do not say (config's ``xds.locality_failover``)."""
        self._listener = listener
        self._mcp = mcp
        self._locality_failover = locality_failover
        self._failover: dict[str, Service] = {}  # cluster name -> service, for services with locality failover
        # The owner's locality views (cache.LocalityViews), built from this translation.
        self.localities = LocalityEndpoints(lambda: (self._types[ENDPOINT], self._failover))
        self._config_source = build_config_source(sources.mode, sources.xds_cluster, sources.rest_refresh_delay)
        self._entries: dict[ServiceKey, _Translated] = {}
        self._owners: dict[str, ServiceKey] = {}  # cluster name -> service
        self._hosts: dict[str, ServiceKey] = {}  # Istio host -> service
        lds = Resource.of(
            LISTENER,
            listener.name,
            build_listener(listener.name, listener.address, listener.port, listener.route_config_name,
                           self._config_source, listener.on_demand, listener.on_demand_timeout),
        )
        self._types: dict[str, TypeSnapshot] = {
            CLUSTER: TypeSnapshot.empty(CLUSTER),
            ENDPOINT: TypeSnapshot.empty(ENDPOINT),
            LISTENER: TypeSnapshot.build(LISTENER, [lds]),
            ROUTE: TypeSnapshot.build(ROUTE, [self._route_config()]),
        }
        if listener.on_demand:  # off, VHDS is not served (answered empty)
            self._types[VIRTUAL_HOST] = TypeSnapshot.empty(VIRTUAL_HOST)
        if mcp is not None:  # off, the collections are not served (answered empty)
            for url in MCP_TYPES:
                self._types[url] = TypeSnapshot.empty(url)
        self.errors: dict[ServiceKey, TranslationError] = {}

    @property
    def snapshot(self) -> Snapshot:
        return Snapshot(MappingProxyType(dict(self._types)))

    def fails_over(self, svc: Service) -> bool:
        """Whether the service's assignments are prioritised by each node's locality."""
        return self._locality_failover if svc.locality_failover is None else svc.locality_failover

    def update(self, services: Mapping[ServiceKey, Service], changed: Iterable[ServiceKey]) -> Snapshot:
        """Re-translate the ``changed`` services against the current view."""
        clusters: dict[str, Resource] = {}
        endpoints: dict[str, Resource] = {}
        mcp: dict[str, dict[str, Resource]] = {url: {} for url in MCP_TYPES}
        mcp_removed: dict[str, list[str]] = {url: [] for url in MCP_TYPES}
        removed: list[str] = []
        localized: dict[str, Service] = {}  # rebuilt for each open locality
        vhosts: dict[str, Resource] = {}  # on demand
        vhosts_removed: list[str] = []
        routes_dirty = False
        for key in sorted(changed):
            svc = services.get(key)
            old = self._entries.get(key)
            if svc is None:
                self.errors.pop(key, None)
                if old is not None:
                    del self._entries[key]
                    del self._owners[old.name]
                    self._failover.pop(old.name, None)
                    self._hosts.pop(self._host(key), None)
                    for r in old.mcp:
                        mcp_removed[r.type_url].append(r.name)
                    with contextlib.suppress(KeyError):  # never labelled: nothing to remove
                        PROTECT_THRESHOLD_ACTIVE.remove(old.name)
                    removed.append(old.name)
                    if old.vhds is not None:
                        vhosts_removed.append(old.vhds.name)
                    routes_dirty = True
                continue
            try:
                new = self._translate(key, svc, old)
            except Exception as e:  # one bad service must not stop the others
                err = e if isinstance(e, TranslationError) else TranslationError(repr(key), f"{type(e).__name__}: {e}")
                self.errors[key] = err
                log_event(log, logging.ERROR, "translation.failed", service=repr(key), reason=err.reason,
                          kept_previous=old is not None)
                continue
            self.errors.pop(key, None)
            self._entries[key] = new
            self._owners[new.name] = key
            if old is None or new.cluster is not old.cluster:
                clusters[new.name] = new.cluster
            if old is None or new.endpoints is not old.endpoints:
                endpoints[new.name] = new.endpoints
            if self.fails_over(svc):
                if old is None or new.endpoints is not old.endpoints or not self.fails_over(old.service):
                    localized[new.name] = svc
                self._failover[new.name] = svc
            elif self._failover.pop(new.name, None) is not None:
                endpoints.setdefault(new.name, new.endpoints)  # every locality back to the plain one
            if old is None or new.vhost is not old.vhost:
                routes_dirty = True
            if new.vhds is not None and (old is None or new.vhds is not old.vhds):
                vhosts[new.vhds.name] = new.vhds
            if old is None or new.entries is not old.entries or new.rules is not old.rules:
                kept = {(r.type_url, r.name) for r in new.mcp}
                for r in old.mcp if old is not None else ():
                    if (r.type_url, r.name) not in kept:
                        mcp_removed[r.type_url].append(r.name)
                for r in new.mcp:
                    mcp[r.type_url][r.name] = r
        types = self._types
        types[CLUSTER] = types[CLUSTER].evolve(clusters, removed)
        types[ENDPOINT] = types[ENDPOINT].evolve(endpoints, removed)
        if len(self.localities):
            self.localities.update({n: r for n, r in endpoints.items() if n not in localized}, localized, removed)
        if self._mcp is not None:
            for url in MCP_TYPES:
                types[url] = types[url].evolve(mcp[url], mcp_removed[url])
        if vhosts or vhosts_removed:
            types[VIRTUAL_HOST] = types[VIRTUAL_HOST].evolve(vhosts, vhosts_removed)
        if routes_dirty and not self._listener.on_demand:  # on demand, the route configuration never changes
            rc = self._route_config()
            types[ROUTE] = types[ROUTE].evolve({rc.name: rc}, ())
        return self.snapshot

    def _translate(self, key: ServiceKey, svc: Service, old: _Translated | None) -> _Translated:
        if old is not None and old.service is svc:
            return old
        name = cluster_name(key)
        owner = self._owners.get(name)
        if owner is not None and owner != key:
            raise TranslationError(repr(key), f"cluster name {name!r} is already used by service {owner!r}")
        host = self._host(key)
        owner = self._hosts.get(host) if host else None
        if owner is not None and owner != key:
            raise TranslationError(repr(key), f"Istio host {host!r} is already used by service {owner!r}")
        same_spec = old is not None and old.service.spec_equals(svc)
        rules: tuple[Resource, ...] = ()
        vhds: Resource | None = None
        if old is not None and same_spec:
            cluster, vhost, rules, vhds = old.cluster, old.vhost, old.rules, old.vhds
        else:
            cluster = Resource.of(CLUSTER, name, build_cluster(name, svc, self._config_source))
            if self._listener.on_demand:  # served alone over VHDS, never in the route configuration
                route = self._listener.route_config_name
                vhost = None
                vhds = Resource.of(VIRTUAL_HOST, vhds_name(route, name), build_vhds_virtual_host(route, name, svc))
            else:
                vhost = build_virtual_host(name, svc).SerializeToString(deterministic=True)
            if self._mcp is not None:
                rules = tuple(build_traffic_rules(key, svc, self._mcp))
        same_endpoints = old is not None and (old.service.instances, old.service.protect_threshold) == (
            svc.instances, svc.protect_threshold)
        if old is not None and same_endpoints:
            eds = old.endpoints
        else:
            eds = Resource.of(ENDPOINT, name, build_load_assignment(name, svc))
            self._report_protection(name, svc, old)
        entries = tuple(build_service_entries(key, svc, self._mcp)) if self._mcp is not None else ()
        if host:
            self._hosts[host] = key
        return _Translated(svc, name, cluster, eds, vhost, vhds, entries, rules)

    def _host(self, key: ServiceKey) -> str:
        return istio_host(key, self._mcp.host_suffix) if self._mcp is not None else ""

    def _report_protection(self, name: str, svc: Service, old: _Translated | None) -> None:
        active = protection_active(svc)
        was = old is not None and protection_active(old.service)
        if active:
            PROTECT_THRESHOLD_ACTIVE.labels(cluster=name).set(1)
        elif was:  # a series only while active: 100,000 services must not mean 100,000 series
            with contextlib.suppress(KeyError):
                PROTECT_THRESHOLD_ACTIVE.remove(name)
        if active != was:
            healthy = sum(1 for i in svc.instances if i.enabled and i.healthy)
            enabled = sum(1 for i in svc.instances if i.enabled)
            log_event(log, logging.WARNING if active else logging.INFO,
                      "protect_threshold.on" if active else "protect_threshold.off", cluster=name,
                      healthy=healthy, enabled=enabled, threshold=svc.protect_threshold)

    def _route_config(self) -> Resource:
        name = self._listener.route_config_name
        if self._listener.on_demand:
            return Resource.of(ROUTE, name, build_vhds_route_configuration(name, self._config_source))
        vhosts = [e.vhost for e in sorted(self._entries.values(), key=lambda e: e.name) if e.vhost is not None]
        return Resource.from_payload(ROUTE, name, route_configuration_payload(name, vhosts))
