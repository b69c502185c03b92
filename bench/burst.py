"""A burst of registrations through the Nacos v1 HTTP API -> how many snapshots it became.

``--events`` registrations (persistent instances over ``--services`` services) from
``--clients`` concurrent HTTP clients against one ``xdscp serve`` on the embedded
registry. Prints the snapshots published for the burst (xdscp_snapshots_published_total)
and the ratio of events to snapshots, per debounce setting. How many land in one
window depends on how fast the clients and the server run, which is why this is a
figure and not a test (tests/unit/test_publisher.py checks the window on a manual clock).

    python bench/burst.py --events 1000 --debounce 0,0.003,0.02
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from xdscp.local.control_plane import XdscpProcess


def published(admin: str) -> float:
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    match = re.search(r"^xdscp_snapshots_published_total (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def burst(admin: str, events: int, services: int, clients: int) -> float:
    url = f"http://{admin}/nacos/v1/ns/instance"
    work = [(f"svc{i % services}", 10000 + i) for i in range(events)]

    async def client(share: list[tuple[str, int]]) -> None:
        async with aiohttp.ClientSession() as http:
            for name, port in share:
                params = {"serviceName": name, "ip": "127.0.0.1", "port": str(port), "ephemeral": "false"}
                async with http.post(url, params=params) as r:
                    r.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(client(work[i::clients]) for i in range(clients)))
    return time.perf_counter() - started


def run(debounce: float, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = {"kind": "embedded", "name": "embedded", "database": None}
        proc = XdscpProcess(Path(tmp), sources=[source], xds_settings={"debounce": debounce}).start()
        try:
            before = published(proc.admin_address)
            took = asyncio.run(burst(proc.admin_address, args.events, args.services, args.clients))
            time.sleep(max(0.5, debounce * 10))  # the last window closes
            snapshots = published(proc.admin_address) - before
        finally:
            proc.stop()
    print(f"| {debounce * 1000:g} ms | {args.events} | {took:.2f} s | {snapshots:.0f} | "
          f"{args.events / max(snapshots, 1):.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--debounce", default="0,0.003,0.02", help="comma-separated seconds")
    args = ap.parse_args()
    print("| debounce | registrations | burst took | snapshots published | events per snapshot |")
    print("|---|---|---|---|---|")
    for d in args.debounce.split(","):
        run(float(d), args)


if __name__ == "__main__":
    main()
