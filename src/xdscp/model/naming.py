"""How a service's identity becomes an Envoy resource name (and a Host to route on).

The rule, documented in docs/embedded-registry.md ("Naming rule"):
- a service in the default namespace (``public``) and group (``DEFAULT_GROUP``) is
  named by its service name alone: ``echo``;
- any other service is ``<name>.<group>.<namespace>``: ``orders.payments.prod``;
- a name with a character a Host header cannot carry (Nacos accepts colons, ``@``,
  ``/`` and more: Dubbo registers ``providers:org.demo.DemoService:1.0.0:``) has each such
  character replaced by ``-`` and gets ``-`` plus 8 hex digits of a hash of its whole
  identity appended, so two such services never share a name:
  ``providers-org.demo.DemoService-1.0.0--5c7e0a41``.

The same name is used for the Cluster, its ClusterLoadAssignment and the virtual host
domain, so ``Host: orders.payments.prod`` reaches that service.
"""

from __future__ import annotations

import hashlib
import re

from xdscp.model.service import DEFAULT_GROUP, DEFAULT_NAMESPACE, ServiceKey

_HOST_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NOT_HOST_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def cluster_name(key: ServiceKey) -> str:
    """The Envoy Cluster / ClusterLoadAssignment / virtual host name of a service."""
    if key.namespace == DEFAULT_NAMESPACE and key.group == DEFAULT_GROUP:
        plain = key.name
    else:
        plain = f"{key.name}.{key.group}.{key.namespace}"
    if _HOST_SAFE.match(plain):
        return plain
    digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:8]
    safe = _NOT_HOST_SAFE.sub("-", plain).lstrip("._-") or "service"
    return f"{safe}-{digest}"
