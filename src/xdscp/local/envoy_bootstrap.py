"""Point one of the Envoy bootstraps in envoy/ at a control plane, admin port and node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from xdscp.addresses import split_host_port
from xdscp.documents import parse_document
from xdscp.errors import ConfigError, DocumentError

XDS_CLUSTER = "xdscp"


def render_bootstrap(template: Path, xds_address: str, admin_port: int | None = None,
                     node_id: str | None = None, node_cluster: str | None = None) -> dict[str, Any]:
    """The template with its ``xdscp`` cluster, admin port and node replaced as asked;
    ConfigError saying what is wrong with a template that cannot be."""
    try:
        doc = parse_document(template.read_bytes(), str(template))
    except OSError as e:
        raise ConfigError(f"cannot read the template {template}: {e.strerror}") from None
    except DocumentError as e:
        raise ConfigError(f"the template is not YAML: {e}") from None
    host, port = split_host_port(xds_address)
    try:
        clusters = doc["static_resources"]["clusters"]
        xds = next((c for c in clusters if c["name"] == XDS_CLUSTER), None)
        if xds is None:
            raise ConfigError(f"the template {template} has no static cluster named {XDS_CLUSTER!r}")
        sa = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        sa["address"], sa["port_value"] = host, port
        if admin_port is not None:
            doc["admin"]["address"]["socket_address"]["port_value"] = admin_port
        if node_id is not None:
            doc.setdefault("node", {})["id"] = node_id
        if node_cluster is not None:
            doc.setdefault("node", {})["cluster"] = node_cluster
    except (KeyError, IndexError, TypeError) as e:
        raise ConfigError(f"the template {template} is not an Envoy bootstrap like those in envoy/ "
                          f"(missing {e})") from None
    return doc


def write_bootstrap(doc: dict[str, Any], out: Path) -> Path:
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out
