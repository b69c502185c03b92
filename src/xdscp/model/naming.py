"""How a service's identity becomes an Envoy resource name (and a Host to route on).

The rule, documented in docs/embedded-registry.md ("Naming rule"):
- a service in the default namespace (``public``) and group (``DEFAULT_GROUP``) is
  named by its service name alone: ``echo``;
- any other service is ``<name>.<group>.<namespace>``: ``orders.payments.prod``.

The same name is used for the Cluster, its ClusterLoadAssignment and the virtual host
domain, so ``Host: orders.payments.prod`` reaches that service.
"""

from __future__ import annotations

from xdscp.model.service import DEFAULT_GROUP, DEFAULT_NAMESPACE, ServiceKey


def cluster_name(key: ServiceKey) -> str:
    """The Envoy Cluster / ClusterLoadAssignment name of a service."""
    if key.namespace == DEFAULT_NAMESPACE and key.group == DEFAULT_GROUP:
        return key.name
    return f"{key.name}.{key.group}.{key.namespace}"
