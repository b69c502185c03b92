"""A one-instance change in a large registry file -> an ADS subscriber holding the new assignment.

``xdscp serve`` follows a registry file of S services x 2 instances (YAML as
``yaml.safe_dump`` lays it out, or JSON). An ADS subscriber (SotW) holds the assignment
of one service. Each change moves that service's instance to another port: the file is
replaced atomically (written aside, renamed over), the clock starts at the rename and
stops when the subscriber receives the assignment with the new port. The file's text is
prepared before the clock starts: the writer's own cost is not xdscp's.

Beside it, in this process, the cost of reading the file whole as xdscp did before it
validated (and, for YAML, parsed) only the changed services: parse plus validate every
service.

    python bench/large_file.py --services 1000,10000,100000 --changes 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
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
    if fmt == "json":
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
    return f'"port": {port}' if fmt == "json" else f"port: {port}"


async def follow(xds: str, path: Path, text: str, fmt: str, changes: int) -> list[float]:
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
            started = replace_file(path, text)
            while port not in ports_of(resp := await call.read()):
                queue.put_nowait(DiscoveryRequest(type_url=ENDPOINT, resource_names=[WATCHED],
                                                  version_info=resp.version_info, response_nonce=resp.nonce))
            samples.append(time.perf_counter() - started)
        call.cancel()
    return samples


def whole_read(text: str, fmt: str) -> float:
    """Parse and validate every service: what each re-read cost before."""
    started = time.perf_counter()
    raw = parse_document(text, f"registry.{fmt}")
    for entry in raw["services"]:
        Service.model_validate(entry)
    return time.perf_counter() - started


def run(services: int, fmt: str, changes: int) -> None:
    text = registry_text(services, fmt)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"registry.{fmt}"
        path.write_text(text)
        started = time.perf_counter()
        proc = XdscpProcess(Path(tmp), path, log_level="warning").start(timeout=600)  # ready: first load done
        try:
            first = time.perf_counter() - started
            samples = asyncio.run(follow(proc.xds_address, path, text, fmt, changes))
        finally:
            proc.stop()
    before = whole_read(text, fmt)
    p50 = statistics.median(samples)
    p99 = sorted(samples)[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    print(f"| {services:,} | {fmt} | {len(text) / 1e6:.1f} MB | {first:.1f} s | {p50 * 1000:.0f} ms | "
          f"{p99 * 1000:.0f} ms | {before * 1000:.0f} ms | {before / p50:.0f}x |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", default="1000,10000,100000", help="comma-separated service counts")
    ap.add_argument("--formats", default="yaml,json")
    ap.add_argument("--changes", type=int, default=10)
    args = ap.parse_args()
    print("| services | format | file | first load | change -> ADS p50 | p99 | whole re-read (before) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.services.split(",")):
        for fmt in args.formats.split(","):
            run(n, fmt, args.changes)


if __name__ == "__main__":
    main()
