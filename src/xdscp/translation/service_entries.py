"""Services -> Istio ServiceEntry (and WorkloadEntry) resources for MCP-over-xDS clients.

The mapping, documented in docs/istio-higress.md:

* one ServiceEntry per service, named ``<namespace>/<host>`` in the configured Istio
  namespace; its one host is ``<name>.<group>.<namespace>.<suffix>``, lowercased with
  anything but letters, digits, ``.`` and ``-`` turned into ``-`` (``DEFAULT_GROUP`` ->
  ``default-group``), so it is a valid DNS name;
* ``location: MESH_INTERNAL``, ``resolution: STATIC``, one port (``service_port``, named
  and typed after the service's ``protocol`` metadata, HTTP by default) that each
  endpoint maps to its own port;
* endpoints: the instances Envoy would send traffic to (enabled, healthy or under an
  active protect threshold, not draining); Istio has no health flag on an endpoint, so
  the others are left out, and a service with none keeps its ServiceEntry, empty.
  Labels are the instance metadata that are valid Kubernetes labels; locality is
  ``region/zone``; weight is Envoy's (the registry weight times 100);
* with ``workload_entries``, the endpoints are WorkloadEntry resources instead, chosen
  by a ``workload_selector`` on the label ``xdscp.io/service``.

Each is wrapped as an MCP resource by ``mcp_resources`` (content-hash versions).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from envoy.config.core.v3 import health_check_pb2

from xdscp.cache.resource import Resource
from xdscp.istio_api.networking.v1alpha3 import service_entry_pb2, workload_entry_pb2
from xdscp.model.service import Instance, Service, ServiceKey
from xdscp.translation.endpoints import envoy_weight, health_status, protection_active
from xdscp.translation.mcp_resources import mcp_resource
from xdscp.type_urls import SERVICE_ENTRY, WORKLOAD_ENTRY

_NOT_DNS = re.compile(r"[^a-z0-9.-]+")
# Kubernetes label syntax (Istio validates endpoint labels with it).
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_PROTOCOLS = {"http": "HTTP", "https": "HTTPS", "grpc": "GRPC", "http2": "HTTP2", "tcp": "TCP", "tls": "TLS"}
SERVICE_LABEL = "xdscp.io/service"


@dataclass(frozen=True, slots=True)
class McpSettings:
    """How services are shaped for Istio (see the module docstring; defaults: config's ``mcp``)."""

    namespace: str
    host_suffix: str
    service_port: int
    workload_entries: bool


def istio_host(key: ServiceKey, suffix: str) -> str:
    """The ServiceEntry host of a service: ``<name>.<group>.<namespace>.<suffix>``, DNS-safe."""
    raw = f"{key.name}.{key.group}.{key.namespace}.{suffix}".lower()
    return _NOT_DNS.sub("-", raw.replace("_", "-")).strip(".-")


def build_service_entries(key: ServiceKey, svc: Service, settings: McpSettings) -> list[Resource]:
    """The service's ServiceEntry, then its WorkloadEntries (with ``workload_entries``)."""
    host = istio_host(key, settings.host_suffix)
    port_name = svc.metadata.get("protocol", "http").lower()
    protocol = _PROTOCOLS.get(port_name, "HTTP")
    port_name = port_name if port_name in _PROTOCOLS else "http"
    se = service_entry_pb2.ServiceEntry(
        hosts=[host],
        location=service_entry_pb2.ServiceEntry.MESH_INTERNAL,
        resolution=service_entry_pb2.ServiceEntry.STATIC,
        ports=[service_entry_pb2.ServicePort(number=settings.service_port, protocol=protocol, name=port_name)],
    )
    protected = protection_active(svc)
    serving = sorted((i for i in svc.instances if _receives_traffic(i, protected)), key=lambda i: (i.host, i.port))
    entries = [_workload_entry(inst, port_name) for inst in serving]
    out: list[Resource] = []
    if settings.workload_entries:
        selector = _selector_value(host)
        se.workload_selector.labels[SERVICE_LABEL] = selector
        for inst, we in zip(serving, entries, strict=True):
            we.labels[SERVICE_LABEL] = selector
            name = f"{host}-{_NOT_DNS.sub('-', inst.host.lower())}-{inst.port}"
            out.append(mcp_resource(WORKLOAD_ENTRY, settings.namespace, name, we, key))
    else:
        se.endpoints.extend(entries)
    return [mcp_resource(SERVICE_ENTRY, settings.namespace, host, se, key), *out]


def _receives_traffic(inst: Instance, protected: bool) -> bool:
    return inst.enabled and health_status(inst, protected) == health_check_pb2.HEALTHY


def _workload_entry(inst: Instance, port_name: str) -> workload_entry_pb2.WorkloadEntry:
    we = workload_entry_pb2.WorkloadEntry(address=inst.host, weight=envoy_weight(inst))
    we.ports[port_name] = inst.port
    if inst.region or inst.zone:
        we.locality = "/".join(p for p in (inst.region, inst.zone) if p)
    for k, v in inst.metadata.items():
        if is_label(k, v):
            we.labels[k] = v
    return we


def is_label(key: str, value: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return (bool(_LABEL_NAME.match(name)) and (not prefix or bool(_LABEL_PREFIX.match(prefix)))
            and bool(_LABEL_VALUE.match(value)))


def _selector_value(host: str) -> str:
    """A label value (at most 63 characters) naming the service."""
    if len(host) <= 63:
        return host
    return f"{host[:46]}-{hashlib.blake2b(host.encode(), digest_size=8).hexdigest()}"
