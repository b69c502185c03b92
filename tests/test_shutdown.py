"""SIGTERM with streams connected: every stream ends with UNAVAILABLE (reconnect elsewhere)
and the process exits within its grace period."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from xdscp.local.control_plane import XdscpProcess
from xdscp.type_urls import CLUSTER

from conftest import service, write_registry
from xds_client import node, sotw_request, sotw_stream

STREAMS = 100
GRACE = 10.0  # a bound for a hung shutdown; a healthy one ends as soon as its streams do


@pytest.fixture
def xdscp(tmp_path: Path) -> Iterator[XdscpProcess]:
    registry = tmp_path / "registry.yaml"
    write_registry(registry, [service("echo", 9001, 9002)])
    proc = XdscpProcess(tmp_path, registry, xds_settings={"shutdown_grace": GRACE}).start()
    yield proc
    proc.stop()


async def test_sigterm_ends_every_stream_cleanly_within_the_grace_period(xdscp: XdscpProcess) -> None:
    async with grpc.aio.insecure_channel(xdscp.xds_address) as channel:
        streams = [sotw_stream(channel) for _ in range(STREAMS)]
        for i, s in enumerate(streams):
            s.send(sotw_request(CLUSTER, with_node=node(f"envoy-{i}")))
        await asyncio.gather(*(s.recv() for s in streams))
        assert xdscp._proc is not None
        started = time.monotonic()
        xdscp._proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(s.closed_with(timeout=GRACE + 2) for s in streams))
        assert set(codes) == {grpc.StatusCode.UNAVAILABLE}
        assert all("shutting down" in (s.error.details() or "") for s in streams if s.error is not None)
        code = await asyncio.to_thread(xdscp._proc.wait, GRACE + 5)
        elapsed = time.monotonic() - started
    assert code == 0
    # Every stream ended with our UNAVAILABLE (not cut off by the grace deadline), and the log
    # says end_streams closed all of them: that is "within the grace period", on any machine.
    print(f"SIGTERM -> exit: {elapsed:.2f} s (grace {GRACE} s)")
    assert "xdscp.stopping" in xdscp.log_text() and f"streams_closed={STREAMS}" in xdscp.log_text()
