"""Fan-out: one registry change, N ADS streams, until every one has ACKed the new assignment.

N simulated Envoys are grpc.aio clients spread over worker processes (one TCP
connection each). Each subscribes to every cluster (CDS wildcard) and every
ClusterLoadAssignment, and ACKs every response. When all are in sync, one instance of
one service turns unhealthy through the embedded registry's API. The clock runs from
just before that call until each client has received the changed assignment and sent
its ACK. The same clients are then run against the floor: a bare grpc.aio server that
sends the same pre-serialized bytes to the same streams.

    python bench/fanout.py --streams 100,1000 --services 1000 --instances 10

Printed: p50/p99/max latency over clients, xdscp / floor ratios, server CPU seconds
for the push, and server RSS per connected stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from synthetic_registry import synthetic_registry

from xdscp.cache import wire
from xdscp.config import Config
from xdscp.local.control_plane import XdscpProcess
from xdscp.local.ports import free_port
from xdscp.runtime_settings import translator
from xdscp.server.services import GRPC_SERVER_OPTIONS
from xdscp.sources.embedded.database import RegistryDatabase
from xdscp.type_urls import CLUSTER, ENDPOINT

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
STREAMS_PER_WORKER = 1250


# -- clients (worker processes) --------------------------------------------------------
async def _client(target: str, delta: bool, names: list[str], changed: str, synced: asyncio.Queue,
                  results: list[float], go: asyncio.Event) -> None:
    queue: asyncio.Queue = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while True:
            yield await queue.get()

    ch = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
    if delta:
        call = ch.stream_stream(ADS + "DeltaAggregatedResources", DeltaDiscoveryRequest.SerializeToString,
                                DeltaDiscoveryResponse.FromString)(requests())
        queue.put_nowait(DeltaDiscoveryRequest(type_url=CLUSTER, node={"id": "bench", "cluster": "ingress"}))
        r = await call.read()
        queue.put_nowait(DeltaDiscoveryRequest(type_url=CLUSTER, response_nonce=r.nonce))
        queue.put_nowait(DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=names))
        r = await call.read()
        queue.put_nowait(DeltaDiscoveryRequest(type_url=ENDPOINT, response_nonce=r.nonce))
    else:
        call = ch.stream_stream(ADS + "StreamAggregatedResources", DiscoveryRequest.SerializeToString,
                                DiscoveryResponse.FromString)(requests())
        queue.put_nowait(DiscoveryRequest(type_url=CLUSTER, node={"id": "bench", "cluster": "ingress"}))
        r = await call.read()
        queue.put_nowait(DiscoveryRequest(type_url=CLUSTER, version_info=r.version_info, response_nonce=r.nonce))
        queue.put_nowait(DiscoveryRequest(type_url=ENDPOINT, resource_names=names))
        r = await call.read()
        queue.put_nowait(DiscoveryRequest(type_url=ENDPOINT, resource_names=names, version_info=r.version_info,
                                          response_nonce=r.nonce))
    await synced.put(1)
    await go.wait()
    while True:
        r = await call.read()
        got = [x.name for x in r.resources] if delta else [changed] * len(r.resources)
        if r.type_url == ENDPOINT and changed in got:
            if delta:
                queue.put_nowait(DeltaDiscoveryRequest(type_url=ENDPOINT, response_nonce=r.nonce))
            else:
                queue.put_nowait(DiscoveryRequest(type_url=ENDPOINT, resource_names=names,
                                                  version_info=r.version_info, response_nonce=r.nonce))
            await asyncio.sleep(0)  # let the ACK go out before the clock stops
            results.append(time.time())
            break
    await asyncio.sleep(1.0)
    call.cancel()
    await ch.close()


def _worker(target: str, delta: bool, count: int, names: list[str], changed: str, conn) -> None:  # type: ignore[no-untyped-def]
    import uvloop

    async def main() -> None:
        synced: asyncio.Queue = asyncio.Queue()
        go = asyncio.Event()
        results: list[float] = []
        failures: list[str] = []

        async def client() -> None:
            # A failed client must not hang the run: it counts as synced, and is reported.
            try:
                await _client(target, delta, names, changed, synced, results, go)
            except grpc.aio.AioRpcError as e:
                failures.append(f"{e.code().name}: {e.details()}")
                await synced.put(0)

        tasks = [asyncio.create_task(client()) for _ in range(count)]
        for _ in range(count):
            await synced.get()
        conn.send(failures)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # the driver says go
        go.set()
        await asyncio.wait(tasks, timeout=60)
        conn.send(results)

    uvloop.run(main())


# -- the floor: a bare grpc.aio server with the same pre-serialized bytes ----------------
def _floor_server(port: int, control_port: int, services: int, instances: int, delta: bool) -> None:
    import uvloop
    from aiohttp import web

    from xdscp.cache.resource import Resource

    svcs = synthetic_registry(services, instances)
    snap = translator(Config()).update({s.key: s for s in svcs}, [s.key for s in svcs])
    cds, eds = snap.get(CLUSTER), snap.get(ENDPOINT)
    target = svcs[services // 2]
    changed_svc = target.model_copy(update={"instances": (
        target.instances[0].model_copy(update={"healthy": False}), *target.instances[1:])})
    from xdscp.translation.endpoints import build_load_assignment
    changed = Resource.of(ENDPOINT, target.name, build_load_assignment(target.name, changed_svc))

    def sotw(type_url: str, body: bytes, nonce: str) -> bytes:
        return wire.string_field(1, "v") + body + wire.string_field(4, type_url) + wire.string_field(5, nonce)

    def dlt(type_url: str, entries: bytes, nonce: str) -> bytes:
        return wire.string_field(1, "v") + entries + wire.string_field(4, type_url) + wire.string_field(5, nonce)

    if delta:
        first = {CLUSTER: dlt(CLUSTER, b"".join(r.delta_entry for r in cds.resources.values()), "1"),
                 ENDPOINT: dlt(ENDPOINT, b"".join(r.delta_entry for r in eds.resources.values()), "2")}
        push = dlt(ENDPOINT, changed.delta_entry, "3")
        req_cls = DeltaDiscoveryRequest
    else:
        first = {CLUSTER: sotw(CLUSTER, cds.sotw_body(), "1"), ENDPOINT: sotw(ENDPOINT, eds.sotw_body(), "2")}
        push = sotw(ENDPOINT, changed.sotw_entry, "3")
        req_cls = DiscoveryRequest
    outboxes: list[asyncio.Queue] = []

    async def handler(requests, context):  # type: ignore[no-untyped-def]
        box: asyncio.Queue = asyncio.Queue()
        outboxes.append(box)

        async def read() -> None:
            answered: set[str] = set()
            async for raw in requests:
                t = req_cls.FromString(raw).type_url
                if t not in answered:
                    answered.add(t)
                    box.put_nowait(first[t])

        reader = asyncio.ensure_future(read())
        try:
            while True:
                yield await box.get()
        finally:
            reader.cancel()
            outboxes.remove(box)

    async def push_all(_: web.Request) -> web.Response:
        for box in outboxes:
            box.put_nowait(push)
        return web.Response(text="ok")

    async def main() -> None:
        server = grpc.aio.server(options=GRPC_SERVER_OPTIONS)  # the same as xdscp's: a fair floor
        method = "DeltaAggregatedResources" if delta else "StreamAggregatedResources"
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "envoy.service.discovery.v3.AggregatedDiscoveryService",
            {method: grpc.stream_stream_rpc_method_handler(handler)}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        app = web.Application()
        app.router.add_post("/push", push_all)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", control_port).start()
        await asyncio.Event().wait()

    uvloop.run(main())


# -- driver ------------------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    """``pid`` and its child processes (xdscp's workers)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return [pid] + [p for k in kids for p in tree(k)]


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_kib(pid: int) -> int:
    total = 0
    for p in tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


@dataclass
class Result:
    latencies_ms: list[float]
    cpu_s: float
    rss_per_stream_kib: float


def run_clients(target: str, server_pid: int, streams: int, delta: bool, names: list[str], changed: str,
                trigger) -> Result:  # type: ignore[no-untyped-def]
    ctx = mp.get_context("spawn")
    workers = max(1, -(-streams // STREAMS_PER_WORKER))
    sizes = [streams // workers + (1 if i < streams % workers else 0) for i in range(workers)]
    rss_before = rss_kib(server_pid)
    pipes, procs = [], []
    for size in sizes:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(target, delta, size, names, changed, child), daemon=True)
        p.start()
        pipes.append(parent)
        procs.append(p)
    for parent in pipes:
        if not parent.poll(600):
            raise TimeoutError("clients did not sync in 600 s")
        failures = parent.recv()
        if failures:
            print(f"  ! {len(failures)} clients failed, e.g. {failures[0]}", file=sys.stderr)
    time.sleep(1.0)  # let the initial ACKs settle
    rss_after = rss_kib(server_pid)
    cpu0 = cpu_seconds(server_pid)
    t0 = time.time()
    trigger()
    for parent in pipes:
        parent.send("go")
    stamps: list[float] = []
    for parent in pipes:
        stamps += parent.recv()
    cpu = cpu_seconds(server_pid) - cpu0
    for p in procs:
        p.join(10)
    if len(stamps) != streams:
        print(f"  ! only {len(stamps)} of {streams} clients saw the change", file=sys.stderr)
    return Result([(s - t0) * 1000 for s in stamps], cpu, (rss_after - rss_before) / streams)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", default="100,1000", help="comma-separated N values")
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--instances", type=int, default=10)
    p.add_argument("--modes", default="sotw,delta")
    p.add_argument("--workers", type=int, default=1, help="xdscp processes sharing the xDS port")
    args = p.parse_args()
    svcs = synthetic_registry(args.services, args.instances)
    names = [s.name for s in svcs]
    target = svcs[args.services // 2]
    victim = target.instances[0]
    print(f"fan-out of one instance change, {args.services} services x {args.instances} instances, "
          f"{os.cpu_count()} cores, xdscp workers: {args.workers}")
    print(f"{'mode':<6}{'N':>7} {'server':<7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'cpu s':>8}{'KiB/stream':>11}")
    for mode in args.modes.split(","):
        delta = mode == "delta"
        for n in (int(x) for x in args.streams.split(",")):
            rows = {}
            with tempfile.TemporaryDirectory(prefix="xdscp-fanout-") as d:
                work = Path(d)
                db = RegistryDatabase(work / "registry.db")
                db.import_services(svcs)
                db.close()
                xdscp = XdscpProcess(work, log_level="warning", xds_settings={"workers": args.workers}, sources=[{
                    "kind": "embedded", "database": str(work / "registry.db"),
                    "instance_check": {"enabled": False}}]).start()

                def change(x: XdscpProcess = xdscp) -> None:
                    body = json.dumps({"healthy": False}).encode()
                    req = urllib.request.Request(
                        f"http://{x.admin_address}/v1/services/{target.name}/instances/{victim.host}:{victim.port}",
                        data=body, method="PATCH", headers={"Content-Type": "application/json"})
                    urllib.request.urlopen(req, timeout=10).close()

                try:
                    pid = xdscp._proc.pid  # type: ignore[union-attr]
                    rows["xdscp"] = run_clients(xdscp.xds_address, pid, n, delta, names, target.name, change)
                finally:
                    xdscp.stop()
            port, control = free_port(), free_port()
            ctx = mp.get_context("spawn")
            floor = ctx.Process(target=_floor_server, args=(port, control, args.services, args.instances, delta),
                                daemon=True)
            floor.start()
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{control}/none"), timeout=1)
                except urllib.error.HTTPError:
                    break  # up (404 for the probe path)
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

            def push(c: int = control) -> None:
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{c}/push", method="POST"),
                                       timeout=10).close()

            try:
                assert floor.pid is not None
                rows["floor"] = run_clients(f"127.0.0.1:{port}", floor.pid, n, delta, names, target.name, push)
            finally:
                floor.terminate()
                floor.join(10)
            for name, r in rows.items():
                lat = r.latencies_ms
                print(f"{mode:<6}{n:>7} {name:<7}{statistics.median(lat):9.1f}{pct(lat, 0.99):9.1f}"
                      f"{max(lat):9.1f}{r.cpu_s:8.2f}{r.rss_per_stream_kib:11.1f}")
            x, f = rows["xdscp"].latencies_ms, rows["floor"].latencies_ms
            print(f"{mode:<6}{n:>7} {'ratio':<7}{statistics.median(x) / statistics.median(f):9.2f}"
                  f"{pct(x, 0.99) / pct(f, 0.99):9.2f}{max(x) / max(f):9.2f}")


if __name__ == "__main__":
    main()
