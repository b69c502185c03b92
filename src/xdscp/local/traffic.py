"""Requests through Envoy's listener, counted by who answered."""

from __future__ import annotations

import http.client
from collections import Counter


def count_responses(port: int, host: str, n: int = 30, headers: dict[str, str] | None = None) -> Counter[str]:
    """Send n GETs with ``Host: host`` (and ``headers``) on one connection; count bodies,
    or 'HTTP <status>'."""
    seen: Counter[str] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        for _ in range(n):
            conn.request("GET", "/", headers={"Host": host, **(headers or {})})
            resp = conn.getresponse()
            body = resp.read().decode()
            seen[body if resp.status == 200 else f"HTTP {resp.status}"] += 1
    finally:
        conn.close()
    return seen
