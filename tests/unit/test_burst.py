"""A burst of 1,000 registrations through the real HTTP API: at the end every client holds
exactly the registry's state. (How many pushes the burst became depends on the machine's
speed: bench/burst.py prints it; tests/test_publisher.py checks the debounce window exactly.)"""

from __future__ import annotations

import asyncio

import aiohttp
import grpc

from plane import Plane
from waiting import eventually
from xds_client import follow_assignments

SERVICES, PER_SERVICE, CLIENTS = 10, 100, 8


async def register_all(plane: Plane) -> None:
    url = f"http://127.0.0.1:{plane.cp.admin_port}/nacos/v1/ns/instance"
    work = [(f"svc{s}", 10000 + s * PER_SERVICE + i) for s in range(SERVICES) for i in range(PER_SERVICE)]

    async def client(share: list[tuple[str, int]]) -> None:
        async with aiohttp.ClientSession() as http:
            for name, port in share:
                async with http.post(url, params={"serviceName": name, "ip": "127.0.0.1", "port": str(port),
                                                  "ephemeral": "false"}) as r:
                    assert r.status == 200

    await asyncio.gather(*(client(work[i::CLIENTS]) for i in range(CLIENTS)))


def ports_of(cla: object) -> set[int]:
    return {e.endpoint.address.socket_address.port_value for loc in cla.endpoints  # type: ignore[attr-defined]
            for e in loc.lb_endpoints}


async def test_after_a_burst_sotw_and_delta_clients_end_equal_to_the_registry(embedded: Plane) -> None:
    names = [f"svc{s}" for s in range(SERVICES)]
    async with grpc.aio.insecure_channel(embedded.target) as ch:
        held_sotw: dict[str, set[int]] = {}
        held_delta: dict[str, set[int]] = {}
        followers = [asyncio.create_task(follow_assignments(ch, names, "sotw-client", False, held_sotw, ports_of)),
                     asyncio.create_task(follow_assignments(ch, names, "delta-client", True, held_delta, ports_of))]
        await register_all(embedded)

        def registry_view() -> dict[str, set[int]]:
            return {k.name: {i.port for i in s.instances} for k, s in embedded.cp.registry.services.items()}

        async def converged() -> bool:
            view = registry_view()
            return sum(len(p) for p in view.values()) == SERVICES * PER_SERVICE and held_sotw == view == held_delta

        await eventually(converged, timeout=30, what="both clients hold the registry's state")
        for task in followers:
            task.cancel()
