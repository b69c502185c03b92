"""A one-instance change in a large registry -> an ADS subscriber holding the new assignment.

``xdscp serve`` follows a registry of S services x 2 instances: a file (YAML as
``yaml.safe_dump`` lays it out, or JSON), or an HTTP service list (``kind: http``, JSON
with an ETag, polled every 20 ms). An ADS subscriber (SotW) holds the assignment of one
service. Each change moves that service's instance to another port: the file is replaced
atomically (written aside, renamed over), or the list answers the new document; the clock
starts there and stops when the subscriber receives the assignment with the new port. The
text is prepared before the clock starts: the writer's own cost is not xdscp's.

Beside it, in this process, the cost of reading the file whole as xdscp did before it
validated (and, for YAML, parsed) only the changed services: parse plus validate every
service.

    python bench/large_registry.py --services 1000,10000,100000 --changes 10 --formats yaml,json,http
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.server
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc
import yaml
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest, DiscoveryResponse

from xdscp.documents import parse_document
from xdscp.local.control_plane import XdscpProcess
from xdscp.model.service import Service
from xdscp.type_urls import ENDPOINT

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
WATCHED = "svc-7"
BASE_PORT = 20000


def registry_text(services: int, fmt: str) -> str:
    doc = {"services": [{"name": f"svc-{i}", "instances": [
        {"host": f"10.{i // 250 % 256}.{i % 250}.{j + 1}", "port": 8080} for j in range(2)]} for i in range(services)]}
    doc["services"][7]["instances"][0]["port"] = BASE_PORT
    if fmt in ("json", "http"):
        return json.dumps(doc)
    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)


def replace_file(path: Path, text: str) -> float:
    """Write aside, rename over; the time of the rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return time.perf_counter()


def ports_of(resp: DiscoveryResponse) -> set[int]:
    out = set()
    for any_ in resp.resources:
        cla = ClusterLoadAssignment()
        any_.Unpack(cla)
        out |= {e.endpoint.address.socket_address.port_value for lo in cla.endpoints for e in lo.lb_endpoints}
    return out


def port_field(port: int, fmt: str) -> str:
    return f"port: {port}" if fmt == "yaml" else f'"port": {port}'


class ServiceList(http.server.ThreadingHTTPServer):
    """The HTTP service list xdscp polls: the current document, with an ETag."""

    def __init__(self) -> None:
        self.body = b""
        self.etag = ""

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body, etag = server.body, server.etag
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def publish(self, text: str) -> float:
        body = text.encode()
        self.body, self.etag = body, f'"{hashlib.blake2b(body, digest_size=8).hexdigest()}"'
        return time.perf_counter()


async def follow(xds: str, publish: Callable[[str], float], text: str, fmt: str, changes: int) -> list[float]:
    samples = []
    queue: asyncio.Queue[DiscoveryRequest] = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while True:
            yield await queue.get()

    async with grpc.aio.insecure_channel(xds, options=[("grpc.max_receive_message_length", 1 << 30)]) as ch:
        call = ch.stream_stream(ADS, DiscoveryRequest.SerializeToString, DiscoveryResponse.FromString)(requests())
        queue.put_nowait(DiscoveryRequest(type_url=ENDPOINT, resource_names=[WATCHED],
                                          node={"id": "bench", "cluster": "ingress"}))
        resp = await call.read()
        port = BASE_PORT
        for _ in range(changes):
            queue.put_nowait(DiscoveryRequest(type_url=ENDPOINT, resource_names=[WATCHED],
                                              version_info=resp.version_info, response_nonce=resp.nonce))
            text = text.replace(port_field(port, fmt), port_field(port + 1, fmt), 1)
            port += 1
            started = publish(text)
            while port not in ports_of(resp := await call.read()):
                queue.put_nowait(DiscoveryRequest(type_url=ENDPOINT, resource_names=[WATCHED],
                                                  version_info=resp.version_info, response_nonce=resp.nonce))
            samples.append(time.perf_counter() - started)
        call.cancel()
    return samples


def whole_read(text: str, fmt: str) -> float:
    """Parse and validate every service: what each re-read cost before."""
    started = time.perf_counter()
    raw = parse_document(text, "registry.yaml" if fmt == "yaml" else "registry.json")
    for entry in raw["services"]:
        Service.model_validate(entry)
    return time.perf_counter() - started


def run(services: int, fmt: str, changes: int) -> None:
    text = registry_text(services, fmt)
    with tempfile.TemporaryDirectory() as tmp:
        listing: ServiceList | None = None
        if fmt == "http":
            listing = ServiceList()
            listing.publish(text)
            source = {"kind": "http", "url": f"http://127.0.0.1:{listing.server_address[1]}/services",
                      "interval": 0.02}
            publish: Callable[[str], float] = listing.publish
        else:
            path = Path(tmp) / f"registry.{fmt}"
            path.write_text(text)
            source = {"kind": "file", "path": str(path), "poll_interval": 0.02}
            publish = partial(replace_file, path)
        started = time.perf_counter()
        proc = XdscpProcess(Path(tmp), sources=[source], log_level="warning").start(timeout=600)  # first load done
        try:
            first = time.perf_counter() - started
            samples = asyncio.run(follow(proc.xds_address, publish, text, fmt, changes))
        finally:
            proc.stop()
            if listing is not None:
                listing.shutdown()
    before = whole_read(text, fmt)
    p50 = statistics.median(samples)
    p99 = sorted(samples)[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    print(f"| {services:,} | {fmt} | {len(text) / 1e6:.1f} MB | {first:.1f} s | {p50 * 1000:.0f} ms | "
          f"{p99 * 1000:.0f} ms | {before * 1000:.0f} ms | {before / p50:.0f}x |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", default="1000,10000,100000", help="comma-separated service counts")
    ap.add_argument("--formats", default="yaml,json,http", help="a file in YAML or JSON, or an HTTP list")
    ap.add_argument("--changes", type=int, default=10)
    args = ap.parse_args()
    print("| services | format | file | first load | change -> ADS p50 | p99 | whole re-read (before) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.services.split(",")):
        for fmt in args.formats.split(","):
            run(n, fmt, args.changes)


if __name__ == "__main__":
    main()
