"""The embedded registry as a Nacos server: what one xdscp process takes from Nacos clients.

One ``xdscp serve`` (embedded registry, SQLite) on loopback; the load generator is this
process, speaking Nacos' protocols as the SDKs do (gRPC: ServerCheck, the bi-stream with
ConnectionSetupRequest, InstanceRequest; HTTP: the v1 Open API), sharing the 2 cores.

1. registrations per second over gRPC (``--grpc-clients`` connections, each registering
   a service after another) and over HTTP v1 (``--http-clients`` concurrent requests);
2. heartbeats per second over HTTP v1 (PUT /nacos/v1/ns/instance/beat);
3. connected gRPC clients: ``--connections`` connections, each holding one ephemeral
   instance; xdscp's RSS per connection, and its CPU while they idle (% of one core);
4. from a client's connection closing to an ADS subscriber's assignment without its
   instance: p50/p99 over ``--deaths`` closes;
5. with ``--fanout N,M``: push fan-out. One service of 100 instances, N subscriber
   connections (SDK-like, in processes of their own), and one instance's weight changed
   ``--rounds`` times: the time until each subscriber holds the push (p50/p99 over all),
   and the server's CPU per subscriber per change (the median round; its window ends at
   the last arrival). The same for a bare grpc.aio server writing one pre-encoded push to
   as many streams (bench/nacos_fanout.py), side by side.

    python bench/nacos_capacity.py                          # about 2 minutes
    python bench/nacos_capacity.py --connections 10000      # the 10,000-connection target
    python bench/nacos_capacity.py --fanout 1000,10000      # push fan-out only, against the floor
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import uvloop
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest, DiscoveryResponse
from fanout import cpu_seconds, rss_kib
from nacos_client import NacosClient
from nacos_fanout import PER_PROCESS, SERVICE, VICTIM, floor_server, subscriber_worker
from sampled_profile import sampled
from worker_processes import start_floor, start_workers, stop_floor

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.ports import free_port
from xdscp.local.registration import patch_instance
from xdscp.nacos_protocol import GRPC_PORT_OFFSET
from xdscp.sources.embedded.api.nacos_grpc.server import nacos_server_options
from xdscp.type_urls import ENDPOINT

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def grpc_registrations(port: int, clients: int, total: int) -> float:
    conns = [NacosClient(port) for _ in range(clients)]
    await asyncio.gather(*(c.connect() for c in conns))
    per = total // clients

    async def one(i: int, c: NacosClient) -> None:
        for j in range(per):  # connection i is instance i of services 0..per-1 (one registration each)
            await c.register(f"grpc-{j}", 20000 + i)

    start = time.perf_counter()
    await asyncio.gather(*(one(i, c) for i, c in enumerate(conns)))
    rate = per * clients / (time.perf_counter() - start)
    await asyncio.gather(*(c.close() for c in conns))
    return rate


async def http_rate(admin: str, clients: int, total: int, beat: bool) -> float:
    per = total // clients
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:
        async def one(i: int) -> None:
            for j in range(per):
                # as over gRPC: client i is instance i of services 0..per-1
                params = {"serviceName": f"http-{j}", "ip": "127.0.0.1", "port": str(30000 + i)}
                if beat:
                    async with http.put(f"http://{admin}/nacos/v1/ns/instance/beat", params=params) as r:
                        assert r.status == 200, await r.text()
                else:
                    async with http.post(f"http://{admin}/nacos/v1/ns/instance", params=params) as r:
                        assert r.status == 200, await r.text()

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(clients)))
        return per * clients / (time.perf_counter() - start)


async def held_connections(port: int, pid: int, count: int, idle: float) -> tuple[int, float, float, float]:
    """(connections held, RSS KiB per connection, idle CPU % of a core, seconds to connect all)."""
    rss_before = rss_kib(pid)
    conns = [NacosClient(port) for _ in range(count)]
    start = time.perf_counter()
    sem = asyncio.Semaphore(200)

    async def one(i: int, c: NacosClient) -> None:
        async with sem:
            await c.connect()
            await c.register(f"held-{i % 100}", 40000 + i // 100)  # 100 services, one instance per connection

    await asyncio.gather(*(one(i, c) for i, c in enumerate(conns)))
    took = time.perf_counter() - start
    await asyncio.sleep(2)
    rss_after = rss_kib(pid)
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(idle)
    cpu = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0) * 100
    await asyncio.gather(*(c.close() for c in conns))
    return count, (rss_after - rss_before) / count, cpu, took


async def death_to_assignment(port: int, xds: str, deaths: int) -> list[float]:
    """ms from a connection's close to an ADS subscriber's assignment no longer holding its instance."""
    channel = grpc.aio.insecure_channel(xds)
    stream = channel.stream_stream(ADS, request_serializer=DiscoveryRequest.SerializeToString,
                                   response_deserializer=DiscoveryResponse.FromString)()
    req = DiscoveryRequest(type_url=ENDPOINT, resource_names=["dying"])
    req.node.id = "bench"
    await stream.write(req)
    current: list[int] = []
    changed = asyncio.Event()

    async def follow() -> None:
        nonlocal current
        async for resp in stream:
            for any_msg in resp.resources:
                cla = endpoint_pb2.ClusterLoadAssignment()
                any_msg.Unpack(cla)
                current = sorted(e.endpoint.address.socket_address.port_value
                                 for loc in cla.endpoints for e in loc.lb_endpoints)
            changed.set()
            await stream.write(DiscoveryRequest(type_url=ENDPOINT, resource_names=["dying"],
                                                version_info=resp.version_info, response_nonce=resp.nonce))

    async def until(cond: Any) -> None:
        while not cond():
            changed.clear()
            await asyncio.wait_for(changed.wait(), 30)

    follower = asyncio.create_task(follow())
    samples = []
    try:
        for i in range(deaths):
            c = NacosClient(port)
            await c.connect()
            await c.register("dying", 50000 + i)
            await until(lambda i=i: 50000 + i in current)
            start = time.perf_counter()
            await c.close()
            await until(lambda i=i: 50000 + i not in current)
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        follower.cancel()
        await channel.close()
    return samples


def start_xdscp(work: Path, name: str) -> XdscpProcess:
    return XdscpProcess(work, log_level="warning", name=name, sources=[{
        "kind": "embedded", "database": str(work / f"{name}.db"), "instance_check": {"enabled": False}}]).start()


async def run(args: argparse.Namespace, work: Path) -> None:
    # 1 and 2 on one process; 3 and 4 on a fresh one, so the instances of 1 and 2 expiring
    # (they stop beating) are not in its idle CPU
    xdscp = await asyncio.to_thread(start_xdscp, work, "rates")
    grpc_port = xdscp.admin_port + GRPC_PORT_OFFSET
    assert xdscp.pid is not None
    pid = xdscp.pid

    def cpu_ms_each(cpu0: float) -> str:  # xdscp's own CPU per operation, the load generator's excluded
        return f"xdscp CPU {(cpu_seconds(pid) - cpu0) * 1000 / args.registrations:.2f} ms each"

    try:
        cpu0 = cpu_seconds(pid)
        rate = await grpc_registrations(grpc_port, args.grpc_clients, args.registrations)
        print(f"registrations over gRPC     {rate:8.0f}/s  ({args.grpc_clients} connections, "
              f"{args.registrations} registrations into {args.registrations // args.grpc_clients} services; "
              f"{cpu_ms_each(cpu0)})")
        cpu0 = cpu_seconds(pid)
        rate = await http_rate(xdscp.admin_address, args.http_clients, args.registrations, beat=False)
        print(f"registrations over HTTP v1  {rate:8.0f}/s  ({args.http_clients} concurrent, "
              f"{args.registrations} registrations into {args.registrations // args.http_clients} services; "
              f"{cpu_ms_each(cpu0)})")
        cpu0 = cpu_seconds(pid)
        rate = await http_rate(xdscp.admin_address, args.http_clients, args.registrations, beat=True)
        print(f"heartbeats over HTTP v1     {rate:8.0f}/s  ({args.http_clients} concurrent; {cpu_ms_each(cpu0)}; "
              f"a fleet beating every 5 s: {rate * 5:,.0f} instances)")
    finally:
        await asyncio.to_thread(xdscp.stop)
    xdscp = await asyncio.to_thread(start_xdscp, work, "held")
    grpc_port = xdscp.admin_port + GRPC_PORT_OFFSET
    assert xdscp.pid is not None
    try:
        held, kib, cpu, took = await held_connections(grpc_port, xdscp.pid, args.connections, args.idle)
        print(f"connected gRPC clients      {held:8d}    RSS {kib:5.1f} KiB per connection, idle CPU {cpu:4.1f}% "
              f"of a core over {args.idle:.0f} s (connected in {took:.1f} s)")
        samples = await death_to_assignment(grpc_port, xdscp.xds_address, args.deaths)
        print(f"close -> assignment without it  n={len(samples)}  p50 {statistics.median(samples):6.1f} ms  "
              f"p99 {pct(samples, 0.99):6.1f} ms  max {max(samples):6.1f} ms")
    finally:
        await asyncio.to_thread(xdscp.stop)


@dataclass
class FanoutResult:
    latencies_ms: list[float]
    cpu_s: float  # the median round's
    reached: int  # subscribers that got the push (the median round's)
    failed: int  # subscribers that could not set up


def run_subscribers(port: int, server_pid: int, count: int, rounds: int, trigger: Callable[[int], float],
                    profile: bool = False) -> FanoutResult:
    workers = start_workers(subscriber_worker, count, PER_PROCESS, lambda size: (port, size, rounds))
    pipes = workers.pipes
    failed = 0
    for parent in pipes:
        if not parent.poll(900):
            raise TimeoutError("subscribers did not set up in 900 s")
        failed += len(parent.recv())
    time.sleep(1.0)
    latencies: list[float] = []
    cpu: list[float] = []
    reached: list[int] = []
    with sampled(server_pid, f"xdscp, {count} subscribers, {rounds} changes") if profile else contextlib.nullcontext():
        push_rounds(pipes, server_pid, rounds, trigger, latencies, cpu, reached)
    workers.close()
    return FanoutResult(latencies, statistics.median(cpu), int(statistics.median(reached)), failed)


def push_rounds(pipes: list[Any], server_pid: int, rounds: int, trigger: Callable[[int], float],
                latencies: list[float], cpu: list[float], reached: list[int]) -> None:
    for rnd in range(rounds):
        time.sleep(0.3)
        weight = float(2 + rnd)
        for parent in pipes:
            parent.send(weight)
        for parent in pipes:
            assert parent.recv() == "ready"
        cpu0, t0 = cpu_seconds(server_pid), time.time()
        trigger(rnd)
        stamps: list[float] = []
        for parent in pipes:
            stamps += parent.recv()
        cpu.append(cpu_seconds(server_pid) - cpu0)
        latencies += [(s - t0) * 1000 for s in stamps]
        reached.append(len(stamps))


def fanout_xdscp(work: Path, count: int, rounds: int, profile: bool) -> FanoutResult:
    # Client detection relaxed: thousands of subscribers decoding pushes on the two cores the
    # server uses answer its probes late, and would be closed for it (as Nacos closes them).
    xdscp = XdscpProcess(work, log_level="warning", name=f"fanout-{count}", sources=[{
        "kind": "embedded", "database": str(work / f"fanout-{count}.db"), "instance_check": {"enabled": False},
        "nacos_grpc": {"keepalive_time": 3600, "detection_timeout": 600}}]).start()
    try:
        for i in range(100):
            body = json.dumps({"host": f"10.0.0.{i + 1}", "port": 8080, "ephemeral": False,
                               "metadata": {"version": "v1", "zone": "z1"}}).encode()
            urllib.request.urlopen(urllib.request.Request(
                f"http://{xdscp.admin_address}/v1/services/{SERVICE}/instances", data=body, method="POST",
                headers={"Content-Type": "application/json"}), timeout=10).close()

        def change(rnd: int) -> float:
            patch_instance(xdscp.admin_address, SERVICE, VICTIM[0], VICTIM[1], weight=float(2 + rnd))
            return float(2 + rnd)

        assert xdscp.pid is not None
        return run_subscribers(xdscp.admin_port + GRPC_PORT_OFFSET, xdscp.pid, count, rounds, change, profile)
    finally:
        xdscp.stop()


def fanout_floor(count: int, rounds: int) -> FanoutResult:
    port, control = free_port(), free_port()
    floor = start_floor(floor_server, (port, control, nacos_server_options(64 * 1024 * 1024)), control)

    def push(rnd: int) -> float:
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{control}/push?weight={2 + rnd}",
                                                      method="POST"), timeout=10).close()
        return float(2 + rnd)

    try:
        assert floor.pid is not None
        return run_subscribers(port, floor.pid, count, rounds, push)
    finally:
        stop_floor(floor)


def fanout(args: argparse.Namespace, work: Path) -> None:
    print(f"push fan-out: one service of 100 instances, one instance's weight changed {args.rounds} times")
    print(f"{'subscribers':>11} {'server':<7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'cpu ms':>9}{'us/sub':>9}"
          f"{'reached':>9}")
    for count in (int(x) for x in args.fanout.split(",")):
        rows = {"xdscp": fanout_xdscp(work, count, args.rounds, args.profile),
                "floor": fanout_floor(count, args.rounds)}
        for name, r in rows.items():
            lat = r.latencies_ms or [float("nan")]
            print(f"{count:>11} {name:<7}{statistics.median(lat):9.1f}{pct(lat, 0.99):9.1f}{max(lat):9.1f}"
                  f"{r.cpu_s * 1000:9.1f}{r.cpu_s / max(1, r.reached) * 1e6:9.0f}{r.reached:>9}"
                  + (f"  ({r.failed} could not subscribe)" if r.failed else ""))
        x, f = rows["xdscp"], rows["floor"]
        if x.latencies_ms and f.latencies_ms:
            p50 = statistics.median(x.latencies_ms) / statistics.median(f.latencies_ms)
            print(f"{count:>11} {'ratio':<7}{p50:9.2f}"
                  f"{pct(x.latencies_ms, 0.99) / pct(f.latencies_ms, 0.99):9.2f}{'':>9}{x.cpu_s / f.cpu_s:9.2f}"
                  f"{(x.cpu_s / max(1, x.reached)) / (f.cpu_s / max(1, f.reached)):9.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registrations", type=int, default=4096)
    p.add_argument("--grpc-clients", type=int, default=64)
    p.add_argument("--http-clients", type=int, default=64)
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--idle", type=float, default=10.0)
    p.add_argument("--deaths", type=int, default=50)
    p.add_argument("--fanout", default="", help="subscriber counts for the push fan-out phase (it alone runs)")
    p.add_argument("--rounds", type=int, default=5, help="changes pushed per fan-out run")
    p.add_argument("--profile", action="store_true",
                   help="sample xdscp with py-spy during the fan-out rounds and print the top self-time frames")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # two descriptors a connection, both ends here
    with tempfile.TemporaryDirectory(prefix="xdscp-bench-") as d:
        if args.fanout:
            fanout(args, Path(d))
        else:
            uvloop.run(run(args, Path(d)))


if __name__ == "__main__":
    main()
