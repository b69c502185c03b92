"""What a registration costs in each embedded-registry store, and how fast replicas agree.

    python bench/registry_writes.py --writes 500

Runs a real etcd (Debian's etcd-server) on loopback. For SQLite (one node) and for etcd
(two replicas, in one process, sharing only etcd) it prints p50/p99 of:
  - register(): from the call to the answer (committed, and visible on the writer);
  - for etcd, from the answer to the *other* replica's view holding it;
  - a heartbeat (etcd: two lease renewals; SQLite: a timestamp in memory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from xdscp.config import EmbeddedEtcdConfig, EmbeddedSourceConfig, InstanceCheckConfig
from xdscp.local.etcd import EtcdServer, etcd_binary
from xdscp.model.registry import Registry
from xdscp.model.service import Instance, ServiceKey
from xdscp.runtime_settings import embedded_settings
from xdscp.sources.embedded.contract import RegistryStore
from xdscp.sources.embedded.source import EmbeddedSource

KEY = ServiceKey("public", "DEFAULT_GROUP", "bench")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(what: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return f"  {what:<44} p50 {statistics.median(ms):7.2f} ms   p99 {pct(ms, 0.99):7.2f} ms   (n={len(ms)})"


async def start(settings: EmbeddedSourceConfig) -> tuple[EmbeddedSource, Registry, asyncio.Task[None]]:
    source = EmbeddedSource("embedded", embedded_settings(settings))
    registry = Registry(["embedded"])
    task = asyncio.create_task(source.run(registry))
    while not registry.ready:
        await asyncio.sleep(0.01)
    return source, registry, task


async def timed_writes(store: RegistryStore, writes: int, ephemeral: bool) -> list[float]:
    out = []
    for n in range(writes):
        t0 = time.perf_counter()
        await store.register(KEY, Instance(host="10.1.0.1", port=10000 + n, ephemeral=ephemeral))
        out.append(time.perf_counter() - t0)
    return out


async def timed_beats(store: RegistryStore, beats: int) -> list[float]:
    out = []
    for n in range(beats):
        t0 = time.perf_counter()
        assert await store.beat(KEY, "10.1.0.1", 10000 + n)
        out.append(time.perf_counter() - t0)
    return out


async def replication_lag(writer: RegistryStore, reader: RegistryStore, writes: int) -> list[float]:
    out = []
    for n in range(writes):
        port = 30000 + n
        await writer.register(KEY, Instance(host="10.2.0.1", port=port, ephemeral=False))
        t0 = time.perf_counter()
        while not has_port(reader, port):
            await asyncio.sleep(0.0002)
        out.append(time.perf_counter() - t0)
    return out


def has_port(store: RegistryStore, port: int) -> bool:
    svc = store.service(KEY)
    return svc is not None and any(i.port == port for i in svc.instances)


async def run(writes: int, workdir: Path) -> None:
    print(f"embedded registry writes, {writes} per case")
    sqlite, _, task = await start(EmbeddedSourceConfig(kind="embedded", database=workdir / "reg.db",
                                                       instance_check=InstanceCheckConfig(enabled=False)))
    print("SQLite (one node, synchronous=FULL):")
    print(line("register persistent", await timed_writes(sqlite.store, writes, False)))
    print(line("register ephemeral", await timed_writes(sqlite.store, writes, True)))
    print(line("heartbeat", await timed_beats(sqlite.store, writes)))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    etcd = EtcdServer(workdir).start()
    try:
        # long leases: the heartbeats below come after all the writes
        settings = EmbeddedSourceConfig(kind="embedded", store="etcd", database=None, heartbeat_unhealthy_after=600,
                                        heartbeat_remove_after=1200, instance_check=InstanceCheckConfig(enabled=False),
                                        etcd=EmbeddedEtcdConfig(endpoints=[etcd.url]))
        a, _, ta = await start(settings)
        b, _, tb = await start(settings)
        print("etcd (two replicas, one etcd member on loopback):")
        print(line("register persistent", await timed_writes(a.store, writes, False)))
        print(line("register ephemeral (2 lease grants + txn)", await timed_writes(a.store, writes, True)))
        print(line("heartbeat (2 lease renewals)", await timed_beats(b.store, writes)))
        print(line("answer on replica A -> in replica B's view", await replication_lag(a.store, b.store, writes)))
        for t in (ta, tb):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
    finally:
        etcd.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writes", type=int, default=500)
    args = p.parse_args()
    if etcd_binary() is None:
        raise SystemExit("etcd is not installed (Debian: apt-get install etcd-server; make sysdeps)")
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(run(args.writes, Path(d)))


if __name__ == "__main__":
    main()
