"""Nacos SDK connections to ``store: etcd`` replicas (two ``xdscp serve`` processes on a
real etcd): an instance registered over a connection to replica R lives by a lease R
holds. When R is killed, an SDK that knows another replica registers again there (its
"redo") and nothing is lost; an instance whose SDK knows only R expires with R's lease.
Asserted in ADS subscribers' assignments on the surviving replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.etcd import EtcdServer, etcd_binary

from nacos_sdk_venv import PYTHON_3, start_sdk
from waiting import eventually
from xds_client import follow_assignments

pytestmark = [pytest.mark.skipif(etcd_binary() is None, reason="etcd not installed: make sysdeps installs etcd-server"),
              # nacos-sdk-python runs its redo every 30 s: the test waits for one
              pytest.mark.timeout(400)]

LEASE_TTL = 3


def replica(tmp_path: Path, etcd: EtcdServer, name: str) -> XdscpProcess:
    source = {"kind": "embedded", "name": "embedded", "store": "etcd",
              "etcd": {"endpoints": [etcd.url], "timeout": 2.0, "leader_ttl": 2,
                       "connection_lease_ttl": LEASE_TTL},
              "instance_check": {"enabled": False}}
    return XdscpProcess(tmp_path, name=name, sources=[source])


def nacos_connections(r: XdscpProcess) -> int:
    with urllib.request.urlopen(f"http://{r.admin_address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(r"^xdscp_nacos_grpc_connections (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


async def test_sdk_redo_moves_instances_to_a_live_replica_and_a_dead_replicas_lease_expires(
        tmp_path: Path, etcd: EtcdServer) -> None:
    a, b = replica(tmp_path, etcd, "a"), replica(tmp_path, etcd, "b")
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    held: dict[XdscpProcess, dict[str, Any]] = {a: {}, b: {}}
    channels = {r: grpc.aio.insecure_channel(r.xds_address) for r in (a, b)}
    followers = [asyncio.create_task(follow_assignments(
        channels[r], ["echo", "lonely"], f"follower-{r.log_path.stem}", False, held[r],
        lambda cla: sorted(e.endpoint.address.socket_address.port_value
                           for loc in cla.endpoints for e in loc.lb_endpoints))) for r in (a, b)]
    sdks = []
    try:
        # knows both replicas (as an SDK is given a Nacos cluster's server list)
        both = await start_sdk(PYTHON_3, [a.admin_port, b.admin_port], tmp_path / "sdk-both")
        sdks.append(both)
        assert await both.do("register echo 9001") == "ok register"
        await eventually(lambda: held[a].get("echo") == [9001] and held[b].get("echo") == [9001], timeout=30,
                         what="registered on one replica, seen by both")
        connected = await eventually(lambda: next((r for r in (a, b) if nacos_connections(r) == 1), None),
                                     timeout=30, what="the replica the SDK chose")
        survivor = b if connected is a else a
        # knows only the replica that will die
        alone = await start_sdk(PYTHON_3, connected.admin_port, tmp_path / "sdk-alone")
        sdks.append(alone)
        assert await alone.do("register lonely 9002") == "ok register"
        await eventually(lambda: held[survivor].get("lonely") == [9002], timeout=30, what="lonely registered")

        await asyncio.to_thread(connected.kill)  # SIGKILL: no goodbye, its lease is left to expire
        await eventually(lambda: held[survivor].get("lonely") == [], timeout=LEASE_TTL + 30,
                         what="the dead replica's lease expired its instance")
        await eventually(lambda: nacos_connections(survivor) >= 1, timeout=30, what="the SDK reconnected")
        # the SDK's redo task runs every 30 s (nacos-sdk-python 3.2; Java's every 3 s)
        await eventually(lambda: held[survivor].get("echo") == [9001], timeout=120, what="redone on the survivor")
        await asyncio.sleep(LEASE_TTL + 1)  # past the dead replica's lease: the redone one is the survivor's
        assert held[survivor].get("echo") == [9001]
    finally:
        for sdk in sdks:
            await sdk.close()
        for task in followers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for ch in channels.values():
            # a channel to the killed replica can wait on its dead call: bounded, it is only teardown
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ch.close(grace=0), 10)
        for r in (a, b):
            await asyncio.to_thread(r.stop)
