"""Fan-out: one registry change, N ADS streams, until every one has ACKed the new assignment.

N simulated Envoys are grpc.aio clients spread over worker processes (one TCP
connection each). Each subscribes to every cluster (CDS wildcard) and every
ClusterLoadAssignment, and ACKs every response. When all are in sync, one instance of
one service turns unhealthy through the embedded registry's API. The clock runs from
just before that call until each client has received the changed assignment and sent
its ACK. The same clients are then run against the floor: a bare grpc.aio server that
sends the same pre-serialized bytes to the same streams.

    python bench/fanout.py --streams 100,1000 --services 1000 --instances 10
    python bench/fanout.py --zones 3      # locality failover: streams in 3 zones vs none

Printed: p50/p99/max latency over clients; the server's CPU for the push (the median of
``--rounds`` pushes; each window ends when the last client has ACKed, and tearing streams
down comes after it), the fixed part of it (the same change with no stream connected:
for xdscp the API call, the SQLite write and translation), and the CPU per stream beyond
that; server RSS per connected stream; xdscp / floor ratios; and the streams one core could
push to in a second at that CPU per stream. With ``--workers``, each server process's
streams and CPU. With ``--zones K``, every service has locality failover and instances in K
zones, and xdscp is run twice instead of against the floor: streams whose nodes have no
locality (one assignment each), then streams dealt over the K zones (an assignment per zone).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from synthetic_registry import synthetic_registry
from worker_processes import start_floor, start_workers, stop_floor

from xdscp.cache import wire
from xdscp.config import Config
from xdscp.local.control_plane import XdscpProcess
from xdscp.local.ports import free_port
from xdscp.local.registration import patch_instance
from xdscp.runtime_settings import translator
from xdscp.server.services import GRPC_SERVER_OPTIONS
from xdscp.sources.embedded.database import RegistryDatabase
from xdscp.type_urls import CLUSTER, ENDPOINT

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
STREAMS_PER_WORKER = 1250


# -- clients (worker processes) --------------------------------------------------------
@dataclass
class _Round:
    """One push: when it may start, and when each client ACKed it."""

    go: asyncio.Event
    stamps: list[float]
    all_acked: asyncio.Event
    expected: int = 0

    def acked(self) -> None:
        self.stamps.append(time.time())
        if len(self.stamps) >= self.expected:
            self.all_acked.set()


async def _client(target: str, delta: bool, names: list[str], changed: str, synced: asyncio.Queue,
                  rounds: list[_Round], node: dict[str, Any]) -> tuple[Any, grpc.aio.Channel]:
    """Sync; then, each round, ACK the changed assignment and stamp the time. The call and
    channel are returned open: tearing them down is not part of any push."""
    queue: asyncio.Queue = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while True:
            yield await queue.get()

    ch = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
    if delta:
        call = ch.stream_stream(ADS + "DeltaAggregatedResources", DeltaDiscoveryRequest.SerializeToString,
                                DeltaDiscoveryResponse.FromString)(requests())
        queue.put_nowait(DeltaDiscoveryRequest(type_url=CLUSTER, node=node))
        r = await call.read()
        queue.put_nowait(DeltaDiscoveryRequest(type_url=CLUSTER, response_nonce=r.nonce))
        queue.put_nowait(DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=names))
        r = await call.read()
        queue.put_nowait(DeltaDiscoveryRequest(type_url=ENDPOINT, response_nonce=r.nonce))
    else:
        call = ch.stream_stream(ADS + "StreamAggregatedResources", DiscoveryRequest.SerializeToString,
                                DiscoveryResponse.FromString)(requests())
        queue.put_nowait(DiscoveryRequest(type_url=CLUSTER, node=node))
        r = await call.read()
        queue.put_nowait(DiscoveryRequest(type_url=CLUSTER, version_info=r.version_info, response_nonce=r.nonce))
        queue.put_nowait(DiscoveryRequest(type_url=ENDPOINT, resource_names=names))
        r = await call.read()
        queue.put_nowait(DiscoveryRequest(type_url=ENDPOINT, resource_names=names, version_info=r.version_info,
                                          response_nonce=r.nonce))
    await synced.put(1)
    for rd in rounds:
        await rd.go.wait()
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
                rd.acked()
                break
    return call, ch


def _node(i: int, zones: int) -> dict[str, Any]:
    node: dict[str, Any] = {"id": f"bench-{i}", "cluster": "ingress"}
    if zones:
        node["locality"] = {"region": "r1", "zone": f"z{i % zones}"}
    return node


def _worker(target: str, delta: bool, count: int, names: list[str], changed: str, rounds: int, zones: int,
            conn) -> None:  # type: ignore[no-untyped-def]
    import uvloop

    async def main() -> None:
        synced: asyncio.Queue = asyncio.Queue()
        plan = [_Round(asyncio.Event(), [], asyncio.Event()) for _ in range(rounds)]
        failures: list[str] = []

        async def client(i: int) -> tuple[Any, grpc.aio.Channel] | None:
            # A failed client must not hang the run: it counts as synced, and is reported.
            try:
                return await _client(target, delta, names, changed, synced, plan, _node(i, zones))
            except grpc.aio.AioRpcError as e:
                failures.append(f"{e.code().name}: {e.details()}")
                await synced.put(0)
                return None

        tasks = [asyncio.create_task(client(i)) for i in range(count)]
        for _ in range(count):
            await synced.get()
        for rd in plan:
            rd.expected = count - len(failures)
        conn.send(failures)
        loop = asyncio.get_running_loop()
        for rd in plan:
            await loop.run_in_executor(None, conn.recv)  # the driver says go
            rd.go.set()
            try:
                await asyncio.wait_for(rd.all_acked.wait(), 60)
            except TimeoutError:
                pass  # reported by the driver: fewer stamps than streams
            conn.send(rd.stamps)  # every client ACKed: the driver reads the server's CPU now
        await loop.run_in_executor(None, conn.recv)  # then tear down, outside every measured window
        for t in tasks:
            opened = t.result() if t.done() and not t.exception() else None
            if opened is not None:
                opened[0].cancel()
                await opened[1].close()
        conn.send("closed")

    uvloop.run(main())


# -- the floor: a bare grpc.aio server with the same pre-serialized bytes ----------------
class _FloorStream:
    __slots__ = ("wake", "pending", "nonce")

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.pending: list[bytes] = []
        self.nonce = ""


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
    streams: set[_FloorStream] = set()

    # Written as xdscp's fast path is (xdscp.server.services): context.read/context.write,
    # not the async-generator API; one wake event per stream; every request parsed (the
    # nonce of each ACK read); each type's first request answered once.
    async def handle(_requests, context):  # type: ignore[no-untyped-def]
        st = _FloorStream()
        streams.add(st)
        answered: set[str] = set()

        async def read() -> None:
            while True:
                raw = await context.read()
                if not isinstance(raw, bytes):
                    return
                req = req_cls.FromString(raw)
                st.nonce = req.response_nonce
                if req.type_url not in answered:
                    answered.add(req.type_url)
                    st.pending.append(first[req.type_url])
                    st.wake.set()

        reader = asyncio.ensure_future(read())
        reader.add_done_callback(lambda _: st.wake.set())
        try:
            while True:
                await st.wake.wait()
                st.wake.clear()
                if reader.done():
                    return
                while st.pending:
                    await context.write(st.pending.pop(0))
        finally:
            reader.cancel()
            streams.discard(st)

    async def push_all(_: web.Request) -> web.Response:
        for st in streams:
            st.pending.append(push)
            st.wake.set()
        return web.Response(text="ok")

    async def main() -> None:
        server = grpc.aio.server(options=GRPC_SERVER_OPTIONS)  # the same as xdscp's: a fair floor
        method = "DeltaAggregatedResources" if delta else "StreamAggregatedResources"
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "envoy.service.discovery.v3.AggregatedDiscoveryService",
            {method: grpc.stream_stream_rpc_method_handler(handle)}),))
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


def process_cpu(pid: int) -> float:
    """CPU seconds of every thread of ``pid``, to the nanosecond (schedstat, not 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total / 1e9


def cpu_seconds(pid: int) -> float:
    return sum(process_cpu(p) for p in tree(pid))


def rss_kib(pid: int) -> int:
    total = 0
    for p in tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def streams_by_process(pid: int, port: int) -> dict[int, int]:
    """Established connections to ``port``, by the server process (of ``pid``'s tree) holding them."""
    inodes: dict[str, int] = {}
    for p in tree(pid):
        for fd in Path(f"/proc/{p}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes[link[8:-1]] = p
    counts = dict.fromkeys(tree(pid), 0)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01" and cols[9] in inodes:
                counts[inodes[cols[9]]] += 1
    return counts


@dataclass
class Result:
    latencies_ms: list[float]
    cpu_s: float  # per push: the median round's
    fixed_cpu_s: float  # per push with no stream connected: the change itself (API call, translation)
    pushed_to: int  # the streams each push reached (the median round's): those the CPU was spent on
    rss_per_stream_kib: float
    processes: list[tuple[int, int, float]]  # (pid, streams it serves, CPU seconds per push)

    def us_per_stream(self, streams: int) -> float:
        """What one more stream costs a push: the CPU beyond the change itself, per stream
        reached (fewer than ``streams`` when some clients failed)."""
        return max(0.0, self.cpu_s - self.fixed_cpu_s) / max(1, min(streams, self.pushed_to)) * 1e6


def run_clients(target: str, server_pid: int, streams: int, delta: bool, names: list[str], changed: str,
                trigger: Callable[[int], None], rounds: int, zones: int = 0) -> Result:
    """``rounds`` pushes to ``streams`` synced clients. Each round's CPU window runs from just
    before ``trigger(round)`` to the last client's ACK; the rounds are summed."""
    fixed = []
    for rnd in range(2 * max(1, rounds // 2)):  # an even count: the registry ends as it began
        cpu0 = cpu_seconds(server_pid)
        trigger(rnd)
        time.sleep(0.3)  # the change is published (to no one) meanwhile
        fixed.append(cpu_seconds(server_pid) - cpu0)
    rss_before = rss_kib(server_pid)
    workers = start_workers(_worker, streams, STREAMS_PER_WORKER,
                            lambda size: (target, delta, size, names, changed, rounds, zones))
    pipes = workers.pipes
    for parent in pipes:
        if not parent.poll(600):
            raise TimeoutError("clients did not sync in 600 s")
        failures = parent.recv()
        if failures:
            print(f"  ! {len(failures)} clients failed, e.g. {failures[0]}", file=sys.stderr)
    time.sleep(1.0)  # let the initial ACKs settle
    rss_after = rss_kib(server_pid)
    served = streams_by_process(server_pid, int(target.rsplit(":", 1)[1]))
    latencies: list[float] = []
    cpu: list[float] = []
    reached: list[int] = []
    per_process = dict.fromkeys(served, 0.0)
    for rnd in range(rounds):
        time.sleep(0.3)  # the last round's stragglers (its last ACKs) are processed outside any window
        per0 = {p: process_cpu(p) for p in served}
        cpu0 = cpu_seconds(server_pid)
        t0 = time.time()
        trigger(rnd)
        for parent in pipes:
            parent.send("go")
        stamps: list[float] = []
        for parent in pipes:
            stamps += parent.recv()
        cpu.append(cpu_seconds(server_pid) - cpu0)  # the window ends at the last ACK
        for pid in served:
            per_process[pid] += process_cpu(pid) - per0[pid]
        if len(stamps) != streams:
            print(f"  ! round {rnd}: only {len(stamps)} of {streams} clients saw the change", file=sys.stderr)
        latencies += [(s - t0) * 1000 for s in stamps]
        reached.append(len(stamps))
    workers.close()
    return Result(latencies, statistics.median(cpu), statistics.median(fixed), int(statistics.median(reached)),
                  (rss_after - rss_before) / streams,
                  [(pid, served[pid], per_process[pid] / rounds) for pid in served])


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
    p.add_argument("--rounds", type=int, default=5, help="pushes per run; CPU is their mean, latencies pooled")
    p.add_argument("--held", type=int, default=0,
                   help="each client subscribes to this many assignments (the changed one among them), as an "
                        "on-demand Envoy holds the few services it routes to; 0: every service's")
    p.add_argument("--zones", type=int, default=0,
                   help="locality failover: compare streams in this many zones with streams without a locality")
    args = p.parse_args()
    svcs = synthetic_registry(args.services, args.instances, zones=args.zones)
    print(f"fan-out of one instance change, {args.services} services x {args.instances} instances, "
          f"{os.cpu_count()} cores, xdscp workers: {args.workers}")
    print(f"{'mode':<6}{'N':>7} {'server':<7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'cpu ms':>8}"
          f"{'fixed ms':>9}{'us/stream':>10}{'KiB/stream':>11}")
    for mode in args.modes.split(","):
        delta = mode == "delta"
        for n in (int(x) for x in args.streams.split(",")):
            rows = {}
            if args.zones:
                rows["plain"] = run_xdscp(args, svcs, n, delta, zones=0)
                rows[f"{args.zones} zones"] = run_xdscp(args, svcs, n, delta, zones=args.zones)
            else:
                rows["xdscp"] = run_xdscp(args, svcs, n, delta, zones=0)
                rows["floor"] = run_floor(args, svcs, n, delta)
            for name, r in rows.items():
                lat = r.latencies_ms
                print(f"{mode:<6}{n:>7} {name:<7}{statistics.median(lat):9.1f}{pct(lat, 0.99):9.1f}"
                      f"{max(lat):9.1f}{r.cpu_s * 1000:8.1f}{r.fixed_cpu_s * 1000:9.1f}{r.us_per_stream(n):10.0f}"
                      f"{r.rss_per_stream_kib:11.1f}")
                if len(r.processes) > 1:
                    for pid, count, cpu in r.processes:
                        per = f"{cpu / count * 1e6:.0f} us/stream" if count else "no streams"
                        print(f"{'':<14}  process {pid}: {count} streams, {cpu:.2f} cpu s, {per}")
            xr, fr = rows.values()
            x, f = xr.latencies_ms, fr.latencies_ms
            # With --zones the ratio is the zoned run over the plain one.
            if args.zones:
                xr, fr, x, f = fr, xr, f, x
            print(f"{mode:<6}{n:>7} {'ratio':<7}{statistics.median(x) / statistics.median(f):9.2f}"
                  f"{pct(x, 0.99) / pct(f, 0.99):9.2f}{max(x) / max(f):9.2f}{xr.cpu_s / fr.cpu_s:8.2f}"
                  f"{'':>9}{xr.us_per_stream(n) / fr.us_per_stream(n):10.2f}")
            if not args.zones:
                print(f"{mode:<6}{n:>7} streams one core pushes to in 1 s, from CPU per stream: "
                      f"xdscp {1e6 / xr.us_per_stream(n):,.0f}, floor {1e6 / fr.us_per_stream(n):,.0f}")


def held_names(args: argparse.Namespace, svcs: list[Any], target: Any) -> list[str]:
    """What each client subscribes to: every service, or ``--held`` of them with the changed one."""
    if not args.held:
        return [s.name for s in svcs]
    others = [s.name for s in svcs if s.name != target.name]
    return [target.name, *others[: args.held - 1]]


def run_xdscp(args: argparse.Namespace, svcs: list[Any], n: int, delta: bool, zones: int) -> Result:
    """``n`` streams on xdscp (nodes in ``zones`` zones; 0: no locality) over ``args.rounds`` pushes."""
    target = svcs[args.services // 2]
    names = held_names(args, svcs, target)
    victim = target.instances[0]
    with tempfile.TemporaryDirectory(prefix="xdscp-fanout-") as d:
        work = Path(d)
        db = RegistryDatabase(work / "registry.db")
        db.import_services(svcs)
        db.close()
        xdscp = XdscpProcess(work, log_level="warning", xds_settings={"workers": args.workers}, sources=[{
            "kind": "embedded", "database": str(work / "registry.db"),
            "instance_check": {"enabled": False}}]).start()

        def change(rnd: int, x: XdscpProcess = xdscp) -> None:
            # down, up, down...
            patch_instance(x.admin_address, target.name, victim.host, victim.port, healthy=rnd % 2 == 1)

        try:
            pid = xdscp._proc.pid  # type: ignore[union-attr]
            return run_clients(xdscp.xds_address, pid, n, delta, names, target.name, change, args.rounds, zones)
        finally:
            xdscp.stop()


def run_floor(args: argparse.Namespace, svcs: list[Any], n: int, delta: bool) -> Result:
    """The same clients against the bare grpc.aio server."""
    target = svcs[args.services // 2]
    names = held_names(args, svcs, target)
    port, control = free_port(), free_port()
    floor = start_floor(_floor_server, (port, control, args.services, args.instances, delta), control)

    def push(rnd: int, c: int = control) -> None:
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{c}/push", method="POST"),
                               timeout=10).close()

    try:
        assert floor.pid is not None
        return run_clients(f"127.0.0.1:{port}", floor.pid, n, delta, names, target.name, push, args.rounds)
    finally:
        stop_floor(floor)


if __name__ == "__main__":
    main()
