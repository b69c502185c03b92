"""An Istio message as an MCP-over-xDS resource: the envelope every collection's entries share.

Each resource is an ``istio.mcp.v1alpha1.Resource``: ``metadata.name`` is
``<namespace>/<name>`` (Istio splits it there), ``metadata.version`` a hash of everything
else in it, so Istio (which applies a resource only when its version changes) sees every
change and nothing else, and two replicas agree; ``create_time`` is left unset for the
same reason. The body is the Istio message, packed in an Any.
"""

from __future__ import annotations

from google.protobuf.message import Message

from xdscp.cache.resource import Resource, content_version
from xdscp.istio_api.mcp.v1alpha1 import resource_pb2
from xdscp.model.service import ServiceKey
from xdscp.translation.protobuf_helpers import pack
from xdscp.type_urls import MCP_RESOURCE

SERVICE_KEY_ANNOTATION = "xdscp.io/service-key"


def mcp_resource(collection: str, namespace: str, name: str, body: Message, key: ServiceKey) -> Resource:
    """``body`` as the resource ``namespace/name`` of ``collection``, made from service ``key``
    (annotated with it)."""
    res = resource_pb2.Resource()
    res.metadata.name = f"{namespace}/{name}"
    res.metadata.annotations[SERVICE_KEY_ANNOTATION] = repr(key)
    res.body.CopyFrom(pack(body))
    res.metadata.version = content_version(res.SerializeToString(deterministic=True))
    return Resource.of(collection, res.metadata.name, res, any_type_url=MCP_RESOURCE)
