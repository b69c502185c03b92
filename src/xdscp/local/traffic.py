"""Requests through Envoy's listener, counted by who answered."""

from __future__ import annotations

import http.client
from collections import Counter


def count_responses(port: int, host: str, n: int = 30) -> Counter[str]:
    """Send n GETs with ``Host: host`` on one connection; count bodies, or 'HTTP <status>'."""
    seen: Counter[str] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        for _ in range(n):
            conn.request("GET", "/", headers={"Host": host})
            resp = conn.getresponse()
            body = resp.read().decode()
            seen[body if resp.status == 200 else f"HTTP {resp.status}"] += 1
    finally:
        conn.close()
    return seen
