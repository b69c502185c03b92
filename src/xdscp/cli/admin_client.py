"""``xdscp status`` and ``xdscp dump``: an operator's view of a running xdscp's admin API."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from xdscp.type_urls import short


class AdminUnavailable(Exception):
    """The admin API could not be read."""


def fetch(admin: str, path: str, ca_file: str | None = None, **query: str) -> Any:
    """GET ``path`` from the admin API (``host:port`` or a URL; ``ca_file`` to trust for https)."""
    base = admin if "://" in admin else f"http://{admin}"
    url = base.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")[:200]
        raise AdminUnavailable(f"{url} answered HTTP {e.code}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise AdminUnavailable(f"cannot read {url}: {e}") from None


def status_table(nodes: list[dict[str, Any]]) -> tuple[str, bool]:
    """A table of every stream's types (sent, ACKed, NACKs), and whether any stands NACKed."""
    header = ("NODE", "CLUSTER", "TRANSPORT", "STREAM", "TYPE", "SENT", "ACKED", "NACKS", "LAST NACK")
    rows: list[tuple[str, ...]] = []
    rejected = False
    for n in nodes:
        for type_url, st in sorted(n["types"].items()):
            nacked = bool(st["last_nack"]) and st["last_nack_version"] == st["version_sent"]
            rejected |= nacked
            rows.append((n["node_id"] or "-", n["cluster"] or "-", n["transport"], str(n["stream"]), short(type_url),
                         st["version_sent"] or "-", st["version_acked"] or "-", str(st["nacks"]),
                         (st["last_nack"] or "")[:80] + (" (current)" if nacked else "")))
    if not rows:
        return "no xDS streams connected\n", False
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in (header, *rows)]
    return "\n".join(lines) + "\n", rejected
