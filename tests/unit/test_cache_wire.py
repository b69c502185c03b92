"""Responses assembled from cached bytes must be exactly what protobuf would build."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryResponse, DiscoveryResponse
from google.protobuf import struct_pb2

from xdscp.cache.resource import Resource
from xdscp.cache.snapshot import TypeSnapshot
from xdscp.type_urls import CLUSTER


def cluster(name: str, **labels: str) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name)
    meta = struct_pb2.Struct()
    for k, v in labels.items():
        meta.fields[k].string_value = v
    c.metadata.filter_metadata["x"].CopyFrom(meta)
    return c


def test_sotw_entries_parse_as_the_resources_they_encode() -> None:
    resources = [Resource.of(CLUSTER, n, cluster(n, a="1")) for n in ("b", "a")]
    ts = TypeSnapshot.build(CLUSTER, resources)
    resp = DiscoveryResponse.FromString(b"\x0a\x01v" + ts.sotw_body())
    assert resp.version_info == "v"
    assert [r.type_url for r in resp.resources] == [CLUSTER, CLUSTER]
    assert [cluster_pb2.Cluster.FromString(r.value).name for r in resp.resources] == ["a", "b"]


def test_delta_entries_carry_name_version_and_resource() -> None:
    res = Resource.of(CLUSTER, "echo", cluster("echo"))
    resp = DeltaDiscoveryResponse.FromString(res.delta_entry)
    (r,) = resp.resources
    assert (r.name, r.version) == ("echo", res.version)
    assert cluster_pb2.Cluster.FromString(r.resource.value) == res.message


def test_version_is_a_function_of_content_only() -> None:
    many = {f"k{i}": str(i) for i in range(50)}
    a = Resource.of(CLUSTER, "echo", cluster("echo", **many))
    b = Resource.of(CLUSTER, "echo", cluster("echo", **dict(reversed(list(many.items())))))
    c = Resource.of(CLUSTER, "echo", cluster("echo", k0="changed"))
    assert a.version == b.version != c.version


def test_type_version_is_incremental_and_order_independent() -> None:
    a, b, c = (Resource.of(CLUSTER, n, cluster(n)) for n in "abc")
    ab = TypeSnapshot.build(CLUSTER, [a, b])
    abc = ab.evolve({"c": c}, ())
    assert abc.prev_version == ab.version and abc.changed == {"c"}
    assert abc.version == TypeSnapshot.build(CLUSTER, [c, b, a]).version
    assert abc.evolve({}, ["c"]).version == ab.version
    assert ab.evolve({"a": a}, ()) is ab  # nothing changed: the same snapshot object


def test_varints_and_length_delimited_fields_are_encoded_as_protobuf_encodes_them() -> None:
    from google.protobuf import descriptor_pb2, wrappers_pb2

    from xdscp.cache import wire
    for n in (*range(300), 0x3FFF, 0x4000, 0x4001, 2**21 - 1, 2**21, 2**35 + 7):
        ref = wrappers_pb2.UInt64Value(value=n).SerializeToString()
        assert wire.varint(n) == ref[1:] or n == 0, n  # the field's payload: its tag (one byte) off
    assert wire.varint(0) == b"\x00"
    for size in (0, 1, 127, 128, 16383, 16384, 70000):
        text = "x" * size
        assert wire.string_field(1, text) == wrappers_pb2.StringValue(value=text).SerializeToString(), size
        # field 36: a tag of two bytes
        if text:  # (proto2: an empty string is still sent there)
            assert wire.string_field(36, text) == descriptor_pb2.FileOptions(objc_class_prefix=text).SerializeToString()


def test_entries_are_what_protobuf_encodes_at_every_length_size() -> None:
    """The entries are assembled from field headers and the payload in one join each; at
    payload sizes whose lengths take one, two and three bytes the SotW entry is protobuf's
    encoding, and the Delta entry decodes to the same message (its name comes first, a
    valid field order that protobuf does not choose)."""
    from envoy.service.discovery.v3.discovery_pb2 import Resource as DiscoveryResource
    from google.protobuf import any_pb2
    for size in (0, 100, 127, 128, 16383, 16384, 70000):
        c = cluster_pb2.Cluster(name="n" * 40, alt_stat_name="x" * size)
        res = Resource.of(CLUSTER, "echo", c)
        packed = any_pb2.Any(type_url=CLUSTER, value=c.SerializeToString(deterministic=True))
        assert res.sotw_entry == DiscoveryResponse(resources=[packed]).SerializeToString(), size
        delta = DeltaDiscoveryResponse(resources=[DiscoveryResource(name="echo", version=res.version, resource=packed)])
        assert DeltaDiscoveryResponse.FromString(res.delta_entry) == delta, size
        assert len(res.delta_entry) == len(delta.SerializeToString()), size
