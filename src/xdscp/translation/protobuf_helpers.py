"""Small builders for protobuf well-known types used by every translator module."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import any_pb2, duration_pb2, struct_pb2
from google.protobuf.message import Message

_TYPE_PREFIX = "type.googleapis.com/"


def pack(message: Message) -> any_pb2.Any:
    """Any.Pack with deterministic bytes, so versions never depend on map order."""
    return any_pb2.Any(
        type_url=_TYPE_PREFIX + message.DESCRIPTOR.full_name,
        value=message.SerializeToString(deterministic=True),
    )


def duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int(round((seconds - whole) * 1e9)))


def string_struct(values: Mapping[str, str]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    for k, v in values.items():
        s.fields[k].string_value = v
    return s
