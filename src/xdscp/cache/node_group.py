"""Which node group a node belongs to: every node in a group is served the same snapshot."""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.core.v3.base_pb2 import Node

from xdscp.errors import ConfigError
from xdscp.model.locality import Locality

DEFAULT_GROUP = "default"

NodeGrouper = Callable[[Node], str]


def node_grouper(rule: str) -> NodeGrouper:
    """``cluster`` (node.cluster), ``id`` (node.id) or ``metadata:<key>`` (a node metadata string)."""
    if rule == "cluster":
        return lambda node: node.cluster or DEFAULT_GROUP
    if rule == "id":
        return lambda node: node.id or DEFAULT_GROUP
    if rule.startswith("metadata:") and len(rule) > len("metadata:"):
        key = rule.split(":", 1)[1]

        def by_metadata(node: Node) -> str:
            value = node.metadata.fields.get(key)
            if value is not None and value.WhichOneof("kind") == "string_value" and value.string_value:
                return value.string_value
            return DEFAULT_GROUP

        return by_metadata
    raise ConfigError(f"node_group_by must be 'cluster', 'id' or 'metadata:<key>', not {rule!r}")


def node_locality(node: Node) -> Locality | None:
    """The node's region and zone (subzone is not told apart); None when it sets neither."""
    if not node.HasField("locality"):
        return None
    loc = node.locality
    if not loc.region and not loc.zone:
        return None
    return Locality(loc.region, loc.zone)
