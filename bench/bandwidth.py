"""Bytes per data plane: one instance change in a 1,000-service registry, xDS push vs polling.

    python bench/bandwidth.py --clients 100 --services 1000 --instances 10

SotW and Delta clients (grpc.aio, in this process, ACKing everything) sync, then one
instance turns unhealthy. Every response message each client receives after the sync
is counted (serialized protobuf bytes; HTTP/2 framing is not). The polling design is
a client fetching every service's instance list over the Nacos v1 HTTP API once a
second. One full round is fetched and measured, then scaled to 60 s. Also printed:
the changed ClusterLoadAssignment's own size, and the Delta response's size relative
to it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import urllib.request
from pathlib import Path

import grpc
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from synthetic_registry import synthetic_registry

from xdscp.app import ControlPlane
from xdscp.config import Config, EmbeddedSourceConfig
from xdscp.sources.embedded.database import RegistryDatabase
from xdscp.type_urls import CLUSTER, ENDPOINT

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"


class Client:
    """One data plane; counts the bytes of every response after ``counting`` is set."""

    def __init__(self, channel: grpc.aio.Channel, delta: bool, names: list[str]) -> None:
        self.delta = delta
        self.names = names
        self.queue: asyncio.Queue = asyncio.Queue()
        self.counting = False
        self.bytes = 0
        self.responses = 0
        self.synced = asyncio.Event()
        method = "DeltaAggregatedResources" if delta else "StreamAggregatedResources"
        req_cls = DeltaDiscoveryRequest if delta else DiscoveryRequest
        self.call = channel.stream_stream(ADS + method, req_cls.SerializeToString, lambda b: b)(self._requests())

    async def _requests(self):  # type: ignore[no-untyped-def]
        while True:
            yield await self.queue.get()

    async def run(self) -> None:
        node = {"id": "bw", "cluster": "ingress"}
        if self.delta:
            self.queue.put_nowait(DeltaDiscoveryRequest(type_url=CLUSTER, node=node))
            self.queue.put_nowait(DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=self.names))
        else:
            self.queue.put_nowait(DiscoveryRequest(type_url=CLUSTER, node=node))
            self.queue.put_nowait(DiscoveryRequest(type_url=ENDPOINT, resource_names=self.names))
        seen = set()
        async for raw in self.call:
            if self.counting:
                self.bytes += len(raw)
                self.responses += 1
            if self.delta:
                r = DeltaDiscoveryResponse.FromString(raw)
                self.queue.put_nowait(DeltaDiscoveryRequest(type_url=r.type_url, response_nonce=r.nonce))
            else:
                r = DiscoveryResponse.FromString(raw)
                names = self.names if r.type_url == ENDPOINT else []
                self.queue.put_nowait(DiscoveryRequest(type_url=r.type_url, resource_names=names,
                                                       version_info=r.version_info, response_nonce=r.nonce))
            seen.add(r.type_url)
            if seen == {CLUSTER, ENDPOINT}:
                self.synced.set()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--instances", type=int, default=10)
    args = p.parse_args()
    svcs = synthetic_registry(args.services, args.instances)
    names = [s.name for s in svcs]
    target = svcs[len(svcs) // 2]
    with tempfile.TemporaryDirectory(prefix="xdscp-bw-") as d:
        db = RegistryDatabase(Path(d) / "r.db")
        db.import_services(svcs)
        db.close()
        cfg = Config(xds={"address": "127.0.0.1:0"}, admin={"address": "127.0.0.1:0"},
                     sources=[EmbeddedSourceConfig(kind="embedded", database=Path(d) / "r.db",
                                                   instance_check={"enabled": False})])
        cp = ControlPlane(cfg)
        await cp.start()
        try:
            results = {}
            for mode in ("sotw", "delta"):
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_port}")
                clients = [Client(channel, mode == "delta", names) for _ in range(args.clients)]
                tasks = [asyncio.create_task(c.run()) for c in clients]
                await asyncio.wait_for(asyncio.gather(*(c.synced.wait() for c in clients)), 300)
                await asyncio.sleep(0.5)
                for c in clients:
                    c.counting = True
                store = cp.sources[0].store  # type: ignore[attr-defined]
                victim = target.instances[0]
                # SotW turns it unhealthy, Delta back to healthy: one real change each time.
                store.update(target.key, victim.host, victim.port, {"healthy": mode == "delta"})
                await asyncio.sleep(2.0)
                results[mode] = (sum(c.bytes for c in clients) / len(clients),
                                 sum(c.responses for c in clients) / len(clients))
                for t in tasks:
                    t.cancel()
                await channel.close()
            cla = cp.cache.get().get(ENDPOINT).resources[target.name]  # type: ignore[union-attr]
            cla_bytes = len(cla.message.SerializeToString())
            poll_round = await asyncio.to_thread(_poll_round, f"127.0.0.1:{cp.admin_port}", names)
        finally:
            await cp.stop(0)
    print(f"one instance change, {args.services} services x {args.instances} instances, "
          f"{args.clients} data planes each")
    print(f"  changed ClusterLoadAssignment itself: {cla_bytes} bytes")
    for mode, (per_client, responses) in results.items():
        print(f"  {mode:<5} bytes per data plane for the change: {per_client:8.0f} "
              f"({responses:.1f} responses; {per_client / cla_bytes:.2f}x the assignment)")
    print(f"  HTTP polling, one full round (every service's instance list): {poll_round} bytes")
    sotw, delta = results["sotw"][0], results["delta"][0]
    print(f"  over 60 s with that one change, per data plane: SotW {sotw:.0f} B, Delta {delta:.0f} B, "
          f"polling at 1/s {poll_round * 60:,} B ({poll_round * 60 / delta:,.0f}x Delta)")
    print(f"  for {args.clients} data planes over 60 s: polling {poll_round * 60 * args.clients / 1e6:,.1f} MB, "
          f"Delta {delta * args.clients / 1e3:.1f} kB")


def _poll_round(admin: str, names: list[str]) -> int:
    """Bytes of one polling round: body plus status line and headers, per service."""
    total = 0
    for name in names:
        with urllib.request.urlopen(f"http://{admin}/nacos/v1/ns/instance/list?serviceName={name}", timeout=10) as r:
            body = r.read()
            headers = sum(len(k) + len(v) + 4 for k, v in r.getheaders()) + len("HTTP/1.1 200 OK\r\n\r\n")
            total += len(body) + headers
    return total


if __name__ == "__main__":
    asyncio.run(main())
