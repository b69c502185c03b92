"""One registry change reaches every stream of a group, with the same bytes for each."""

from __future__ import annotations

import asyncio

from xdscp.type_urls import ENDPOINT

from plane import Plane, service
from xds_client import delta_request, delta_stream, node, sotw_request, sotw_stream


async def test_every_stream_gets_the_change_once(plane: Plane, channel) -> None:
    sotw = [sotw_stream(channel) for _ in range(20)]
    delta = [delta_stream(channel) for _ in range(20)]
    for i, s in enumerate(sotw):
        s.send(sotw_request(ENDPOINT, ["echo", "api"], with_node=node(f"sotw-{i}")))
    for i, d in enumerate(delta):
        d.send(delta_request(ENDPOINT, ["echo", "api"], with_node=node(f"delta-{i}")))
    firsts = await asyncio.gather(*(s.recv() for s in sotw + delta))
    for s, r in zip(sotw, firsts[:20], strict=True):
        s.send(sotw_request(ENDPOINT, ["echo", "api"], version=r.version_info, nonce=r.nonce))
    for d, r in zip(delta, firsts[20:], strict=True):
        d.send(delta_request(ENDPOINT, nonce=r.nonce))

    plane.write([service("echo", 9001, 9002, 9003), service("api", 9101)])
    pushed = await asyncio.gather(*(s.recv() for s in sotw + delta))
    sotw_bodies = {r.resources[0].SerializeToString() for r in pushed[:20]}
    delta_bodies = {r.resources[0].SerializeToString() for r in pushed[20:]}
    assert len(sotw_bodies) == 1 and len(delta_bodies) == 1  # one encoding, shared
    assert all(len(r.resources) == 1 for r in pushed)  # only "echo" changed
    assert len({r.version_info for r in pushed[:20]}) == 1
    assert len({r.nonce for r in pushed[:20]}) == 20  # nonces stay per stream
    await asyncio.gather(*(s.expect_silence(0.2) for s in sotw + delta))
    await asyncio.gather(*(s.close() for s in sotw + delta))
