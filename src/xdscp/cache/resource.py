"""A resource serialized once per content version, ready to drop into any response.

Only the bytes are kept: a protobuf message per resource cost about 4.5 KiB of memory per
service (upb arenas), and nothing on the serving path reads it. ``message`` decodes one
on demand (tests, debugging)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from xdscp.cache import wire

# Field numbers in envoy.service.discovery.v3 messages.
_ANY_TYPE_URL, _ANY_VALUE = 1, 2
_RESPONSE_RESOURCES = 2  # DiscoveryResponse.resources and DeltaDiscoveryResponse.resources
_RES_VERSION, _RES_RESOURCE, _RES_NAME = 1, 2, 3  # discovery.v3.Resource


def content_version(payload: bytes) -> str:
    """A version that is a function of content only, so replicas agree."""
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Resource:
    """One named xDS resource at one version, with its encoded response entries."""

    type_url: str
    name: str
    version: str
    sotw_entry: bytes  # DiscoveryResponse.resources[i]: an Any
    delta_entry: bytes  # DeltaDiscoveryResponse.resources[i]: a Resource wrapping the Any

    @property
    def message(self) -> Message:
        """The resource decoded from its bytes (a new message each time: not for the hot path)."""
        packed = any_pb2.Any.FromString(wire.field_payload(self.sotw_entry))
        descriptor = descriptor_pool.Default().FindMessageTypeByName(packed.TypeName())
        return message_factory.GetMessageClass(descriptor).FromString(packed.value)

    @classmethod
    def of(cls, type_url: str, name: str, message: Message, any_type_url: str | None = None) -> Resource:
        # Deterministic: Struct metadata is a map, and map order must not change versions.
        return cls.from_payload(type_url, name, message.SerializeToString(deterministic=True), any_type_url)

    @classmethod
    def from_payload(cls, type_url: str, name: str, payload: bytes, any_type_url: str | None = None) -> Resource:
        """The resource whose serialized message is ``payload``; its version is the payload's.

        ``any_type_url`` is the Any's type when it is not the collection's own: an MCP
        collection (``networking.istio.io/v1/ServiceEntry``) carries
        ``istio.mcp.v1alpha1.Resource`` messages.
        """
        version = content_version(payload)
        # The Any (type URL, value), then each entry around it: one join per entry, so the
        # payload is copied twice, not once per enclosing field.
        any_head = wire.shared_string_field(_ANY_TYPE_URL, any_type_url or type_url) + wire.header(
            _ANY_VALUE, len(payload))
        any_len = len(any_head) + len(payload)
        meta = (wire.string_field(_RES_NAME, name) + wire.string_field(_RES_VERSION, version)
                + wire.header(_RES_RESOURCE, any_len))
        return cls(
            type_url=type_url,
            name=name,
            version=version,
            sotw_entry=b"".join((wire.header(_RESPONSE_RESOURCES, any_len), any_head, payload)),
            delta_entry=b"".join((wire.header(_RESPONSE_RESOURCES, len(meta) + any_len), meta, any_head, payload)),
        )
