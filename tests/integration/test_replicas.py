"""Two xdscp processes serving the same registry file report identical versions."""

from __future__ import annotations

from pathlib import Path

import grpc

from xdscp.local.control_plane import XdscpProcess
from xdscp.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE

from plane import service, write_registry
from xds_client import delta_request, delta_stream, node, sotw_request, sotw_stream


async def versions_of(address: str) -> dict[str, object]:
    out: dict[str, object] = {}
    async with grpc.aio.insecure_channel(address) as ch:
        s = sotw_stream(ch)
        s.send(sotw_request(CLUSTER, with_node=node()))
        s.send(sotw_request(ENDPOINT, ["echo", "api", "ghost"]))
        s.send(sotw_request(LISTENER))
        s.send(sotw_request(ROUTE, ["ingress_http"]))
        for _ in range(4):
            r = await s.recv()
            out[f"sotw {r.type_url}"] = r.version_info
        await s.close()
        d = delta_stream(ch)
        d.send(delta_request(CLUSTER, with_node=node()))
        d.send(delta_request(ENDPOINT, ["echo", "api"]))
        for _ in range(2):
            r = await d.recv()
            out[f"delta {r.type_url}"] = (r.system_version_info, sorted((x.name, x.version) for x in r.resources))
        await d.close()
    return out


async def test_two_processes_agree_on_every_version(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    write_registry(registry, [service("echo", 9001, 9002, lb_policy="RING_HASH",
                                      health_check={"type": "tcp"}, metadata={"team": "x", "tier": "1"}),
                              service("api", 9101)])
    a = XdscpProcess(tmp_path, registry, name="replica-a", listener_port=10000)
    b = XdscpProcess(tmp_path, registry, name="replica-b", listener_port=10000)
    try:
        a.start()
        b.start()
        va, vb = await versions_of(a.xds_address), await versions_of(b.xds_address)
    finally:
        a.stop()
        b.stop()
    assert len(va) == 6
    assert va == vb
