"""``xdscp status`` and ``xdscp dump``: an operator's view of a running xdscp's admin API."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from xdscp.errors import XdscpError
from xdscp.server.subscription import stands_nacked
from xdscp.type_urls import short


class AdminUnavailable(XdscpError):
    """The admin API could not be read, or refused what was asked."""


class AdminAnswered(AdminUnavailable):
    """The admin API answered with an error status; ``body`` is its JSON, if it sent some."""

    def __init__(self, message: str, body: Any) -> None:
        super().__init__(message)
        self.body = body


def fetch(admin: str, path: str, ca_file: str | None = None, **query: str) -> Any:
    """GET ``path`` from the admin API (``host:port`` or a URL; ``ca_file`` to trust for https)."""
    base = admin if "://" in admin else f"http://{admin}"
    url = base.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        detail = raw.decode(errors="replace")[:200]
        raise AdminAnswered(f"{url} answered HTTP {e.code}: {detail}", body) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise AdminUnavailable(f"cannot read {url}: {e}") from None


def dump_config(admin: str, ca_file: str | None, group: str | None, type_: str | None,
                locality: str | None = None) -> tuple[Any, str | None]:
    """/debug/config_dump for ``group`` (None: the one connected), ``type_`` (None: all) and
    ``locality`` (``REGION/ZONE``; None: a node without one), and a note when no node of the
    group is connected. AdminUnavailable says why it cannot."""
    query = {k: v for k, v in (("group", group), ("type", type_), ("locality", locality)) if v}
    try:
        dump = fetch(admin, "/debug/config_dump", ca_file, **query)
    except AdminAnswered as e:
        raise AdminUnavailable(e.body.get("error", str(e)) if isinstance(e.body, dict) else str(e)) from None
    note = None
    if not dump.get("connected", True):
        connected = ", ".join(dump["groups"]) or "none"
        note = (f"no node of group {dump['group']!r} is connected (groups connected: {connected}); "
                f"this is what one would be served")
    return dump, note


def status_table(nodes: list[dict[str, Any]]) -> tuple[str, bool]:
    """A table of every stream's types (sent, held, NACKs), and whether any stands NACKed.
    HELD is the version the proxy says it holds: the last it ACKed, or the one it kept when it
    NACKed. The last column carries each NACK's message whole, on one line."""
    header = ("NODE", "CLUSTER", "TRANSPORT", "STREAM", "TYPE", "SENT", "HELD", "NACKS", "LAST NACK")
    rows: list[tuple[str, ...]] = []
    rejected = False
    for n in nodes:
        for type_url, st in sorted(n["types"].items()):
            nacked = stands_nacked(st)
            rejected |= nacked
            message = " ".join((st["last_nack"] or "").split())
            rows.append((n["node_id"] or "-", n["cluster"] or "-", n["transport"], str(n["stream"]), short(type_url),
                         st["version_sent"] or "-", st["version_acked"] or "-", str(st["nacks"]),
                         (f"(current) {message}" if nacked else message)))
    if not rows:
        return "no xDS streams connected\n", False
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in (header, *rows)]
    return "\n".join(lines) + "\n", rejected
