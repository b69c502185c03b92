"""Nacos' wire protocol, for every piece of xdscp that speaks it (the Nacos source, and the
embedded registry's Nacos APIs): the ``group@@name`` naming rule, host objects, and the
gRPC envelope of 2.x and 3.x, where every message is a ``Payload`` whose ``metadata.type``
names a JSON document carried in ``body.value``.

The messages (``Metadata`` and ``Payload``, fields as in Nacos' ``nacos_grpc_service.proto``)
live in a private descriptor pool: Nacos declares them in no package, and registering
those root-level names in the default pool could clash with a Nacos SDK in the same
process.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from xdscp.errors import XdscpError
from xdscp.model.service import DEFAULT_GROUP

# -- names ---------------------------------------------------------------------------------
SEPARATOR = "@@"
DEFAULT_CLUSTER = "DEFAULT"  # the cluster name Nacos gives an instance that names none
SERVICE_PAGE_SIZE = 500  # the most Nacos 3's admin API gives per page of a service list
GRPC_PORT_OFFSET = 1000  # Nacos' gRPC port is its HTTP port + 1000 unless configured


def split_grouped_name(service_name: str, group: str | None) -> tuple[str, str]:
    """``DEFAULT_GROUP@@echo`` -> (group, name); a bare name takes ``group`` or the default."""
    if SEPARATOR in service_name:
        grp, _, name = service_name.partition(SEPARATOR)
        return grp, name
    return group or DEFAULT_GROUP, service_name


def grouped_name(group: str, name: str) -> str:
    return f"{group}{SEPARATOR}{name}"


# -- host objects ----------------------------------------------------------------------------
# One mapping between Nacos' host objects and xdscp's instances, for every face that speaks
# Nacos (the HTTP and gRPC faces of the embedded registry, the Nacos source). An instance's
# cluster is "" for Nacos' default cluster, whatever the wire called it.
def model_cluster(name: Any) -> Any:
    """A Nacos cluster name as an instance's ``cluster``: "" for the default (absent, empty or
    ``DEFAULT``); anything else as given (validated with the instance)."""
    return "" if name is None or name == "" or name == DEFAULT_CLUSTER else name


def nacos_cluster(cluster: str) -> str:
    """An instance's cluster as Nacos names it."""
    return cluster or DEFAULT_CLUSTER


def nacos_instance(host: dict[str, Any], ephemeral: bool | None = None) -> dict[str, Any]:
    """A Nacos host object as instance fields (validated later, per instance); ``ephemeral``:
    set by the request rather than the host object (the gRPC face's)."""
    return {
        "host": host.get("ip"),
        "port": host.get("port"),
        "weight": host.get("weight", 1.0),
        "healthy": host.get("healthy", host.get("valid", True)),  # "valid" in Nacos 1.x docs
        "enabled": host.get("enabled", True),
        "ephemeral": host.get("ephemeral", True) if ephemeral is None else ephemeral,
        "cluster": model_cluster(host.get("clusterName")),
        "metadata": host.get("metadata") or {},
    }


# -- gRPC ------------------------------------------------------------------------------------
REQUEST_METHOD = "/Request/request"
BI_STREAM_METHOD = "/BiRequestStream/requestBiStream"
# What the server may ask on the stream, and the type of the answer it expects.
SERVER_REQUEST_ANSWERS = {"NotifySubscriberRequest": "NotifySubscriberResponse",
            "ClientDetectionRequest": "ClientDetectionResponse",
            "SetupAckRequest": "SetupAckResponse"}


class NacosWireError(XdscpError):
    """A payload that is not Nacos' envelope around a JSON object."""


def _payload_class() -> Any:
    fdp = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="xdscp/nacos_grpc_payload.proto", syntax="proto3",
                                            dependency=["google/protobuf/any.proto"])
    meta = fd.message_type.add(name="Metadata")
    entry = meta.nested_type.add(name="HeadersEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=fdp.TYPE_STRING, label=fdp.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=fdp.TYPE_STRING, label=fdp.LABEL_OPTIONAL)
    meta.field.add(name="type", number=3, type=fdp.TYPE_STRING, label=fdp.LABEL_OPTIONAL)
    meta.field.add(name="headers", number=7, type=fdp.TYPE_MESSAGE, label=fdp.LABEL_REPEATED,
                   type_name=".Metadata.HeadersEntry")
    meta.field.add(name="clientIp", number=8, type=fdp.TYPE_STRING, label=fdp.LABEL_OPTIONAL)
    payload = fd.message_type.add(name="Payload")
    payload.field.add(name="metadata", number=2, type=fdp.TYPE_MESSAGE, label=fdp.LABEL_OPTIONAL,
                      type_name=".Metadata")
    payload.field.add(name="body", number=3, type=fdp.TYPE_MESSAGE, label=fdp.LABEL_OPTIONAL,
                      type_name=".google.protobuf.Any")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("Payload"))


Payload = _payload_class()


def encode(kind: str, body: dict[str, Any], headers: dict[str, str] | None = None,
           client_ip: str = "") -> bytes:
    """A serialized Payload of type ``kind`` around ``body`` as JSON."""
    msg = Payload()
    msg.metadata.type = kind
    msg.metadata.clientIp = client_ip
    for k, v in (headers or {}).items():
        msg.metadata.headers[k] = v
    msg.body.value = json.dumps(body, separators=(",", ":")).encode()
    return bytes(msg.SerializeToString())


def decode(raw: bytes) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(type, JSON body, headers) of a serialized Payload."""
    try:
        msg = Payload.FromString(raw)
        body = json.loads(msg.body.value or b"{}")
    except (DecodeError, ValueError) as e:
        raise NacosWireError(f"not a Nacos gRPC payload: {e}") from None
    except RecursionError:  # JSON nested deeper than the parser goes
        raise NacosWireError("not a Nacos gRPC payload: its JSON body is nested too deeply") from None
    if not isinstance(body, dict) or not msg.metadata.type:
        raise NacosWireError(f"a Nacos payload of type {msg.metadata.type!r} without a JSON object body")
    return str(msg.metadata.type), body, dict(msg.metadata.headers)


def message_type(raw: bytes) -> str | None:
    """The type of a serialized Payload, its JSON body unread; None if it is not one."""
    try:
        kind = Payload.FromString(raw).metadata.type
    except DecodeError:
        return None
    return str(kind) or None
