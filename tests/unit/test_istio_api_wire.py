"""The Istio messages xdscp sends (protos/, generated into xdscp.istio_api) against istio/api's
own .proto files: every message, field and enum value of ours must be istio/api's, with the
same name, number, type, label and oneof, so Istio decodes what xdscp sends as its own.

istio/api cannot be installed from this project's registries (PyPI, npm, Debian) and its
files are not vendored here, so this runs where a checkout of it is given:

    ISTIO_API_DIR=/path/to/istio/api make test PYTEST_ARGS="-k istio_api_wire"

Without one it is skipped, and says so."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from xdscp.istio_api.mcp.v1alpha1 import metadata_pb2, resource_pb2
from xdscp.istio_api.networking.v1alpha3 import (
    destination_rule_pb2,
    service_entry_pb2,
    virtual_service_pb2,
    workload_entry_pb2,
)

OURS = (metadata_pb2, resource_pb2, destination_rule_pb2, service_entry_pb2, virtual_service_pb2,
        workload_entry_pb2)
THEIRS = ("mcp/v1alpha1/metadata.proto", "mcp/v1alpha1/resource.proto", "networking/v1alpha3/destination_rule.proto",
          "networking/v1alpha3/service_entry.proto", "networking/v1alpha3/virtual_service.proto",
          "networking/v1alpha3/workload_entry.proto", "networking/v1alpha3/sidecar.proto")
ISTIO_API = os.environ.get("ISTIO_API_DIR")


Messages = dict[str, descriptor_pb2.DescriptorProto]
Enums = dict[str, descriptor_pb2.EnumDescriptorProto]


def _index(files: Any) -> tuple[Messages, Enums]:
    """Every message and enum of ``files`` by full name, nested ones included."""
    messages: Messages = {}
    enums: Enums = {}

    def walk(prefix: str, msgs: Any, ens: Any) -> None:
        for e in ens:
            enums[f"{prefix}.{e.name}"] = e
        for m in msgs:
            name = f"{prefix}.{m.name}"
            messages[name] = m
            walk(name, m.nested_type, m.enum_type)

    for f in files:
        walk(f.package, f.message_type, f.enum_type)
    return messages, enums


def theirs(tmp: Path) -> list[descriptor_pb2.FileDescriptorProto]:
    from grpc_tools import protoc

    root = Path(ISTIO_API or "")
    out = tmp / "istio-api.pb"
    include = resources.files("grpc_tools") / "_proto"
    code = protoc.main(["protoc", f"-I{root}", f"-I{root / 'common-protos'}", f"-I{include}", "--include_imports",
                        f"--descriptor_set_out={out}", *THEIRS])
    assert code == 0, "protoc could not compile istio/api's files"
    return list(descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file)


def ours() -> list[descriptor_pb2.FileDescriptorProto]:
    out = []
    for module in OURS:
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        out.append(proto)
    return out


def _oneof(m: descriptor_pb2.DescriptorProto, f: descriptor_pb2.FieldDescriptorProto) -> str | None:
    return m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") and not f.proto3_optional else None


@pytest.mark.skipif(not ISTIO_API, reason="set ISTIO_API_DIR to an istio/api checkout to check the wire format")
def test_every_message_and_field_we_send_is_istio_apis(tmp_path: Path) -> None:
    our_messages, our_enums = _index(ours())
    their_messages, their_enums = _index(theirs(tmp_path))
    problems = []
    checked = 0
    for name, mine in our_messages.items():
        other = their_messages.get(name)
        if other is None:
            problems.append(f"{name}: no such message in istio/api")
            continue
        fields = {f.number: f for f in other.field}
        for f in mine.field:
            t = fields.get(f.number)
            checked += 1
            if t is None:
                problems.append(f"{name}.{f.name} = {f.number}: no field with that number in istio/api")
            elif (f.name, f.type, f.label, f.type_name, _oneof(mine, f)) != (
                    t.name, t.type, t.label, t.type_name, _oneof(other, t)):
                problems.append(f"{name}.{f.name} = {f.number}: istio/api has {t.name} "
                                f"(type {t.type}, label {t.label}, {t.type_name or '-'}, oneof {_oneof(other, t)})")
    for name, mine_enum in our_enums.items():
        other_enum = their_enums.get(name)
        if other_enum is None:
            problems.append(f"{name}: no such enum in istio/api")
            continue
        values = {v.name: v.number for v in other_enum.value}
        for v in mine_enum.value:
            checked += 1
            if values.get(v.name) != v.number:
                problems.append(f"{name}.{v.name} = {v.number}: istio/api has {values.get(v.name)}")
    assert not problems, "\n".join(problems)
    assert checked > 50  # every file was compared, not an empty set
    print(f"{len(our_messages)} messages, {checked} fields and enum values match istio/api")
