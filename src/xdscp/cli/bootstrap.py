"""Point one of the Envoy bootstraps in envoy/ at a control plane, admin port and node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from xdscp.addresses import split_host_port

XDS_CLUSTER = "xdscp"


def render_bootstrap(template: Path, xds_address: str, admin_port: int | None = None,
                     node_id: str | None = None, node_cluster: str | None = None) -> dict[str, Any]:
    """The template with its ``xdscp`` cluster, admin port and node replaced as asked."""
    doc = yaml.safe_load(template.read_text())
    host, port = split_host_port(xds_address)
    clusters = doc["static_resources"]["clusters"]
    xds = next((c for c in clusters if c["name"] == XDS_CLUSTER), None)
    if xds is None:
        raise ValueError(f"{template} has no static cluster named {XDS_CLUSTER!r}")
    sa = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    sa["address"], sa["port_value"] = host, port
    if admin_port is not None:
        doc["admin"]["address"]["socket_address"]["port_value"] = admin_port
    if node_id is not None:
        doc["node"]["id"] = node_id
    if node_cluster is not None:
        doc["node"]["cluster"] = node_cluster
    return doc


def write_bootstrap(doc: dict[str, Any], out: Path) -> Path:
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out
