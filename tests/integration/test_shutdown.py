"""SIGTERM with streams connected: every stream ends with UNAVAILABLE (reconnect elsewhere)
and the process exits within its grace period."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc._cython import cygrpc

from xdscp.config import Config
from xdscp.local.control_plane import XdscpProcess
from xdscp.model.registry import Registry
from xdscp.model.updates import FullSnapshot
from xdscp.runtime_settings import translator
from xdscp.type_urls import CLUSTER

from plane import service, write_registry
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


class VanishedClient:
    """A call whose client left as the server went to write: gRPC fails the write and the
    status (as ExecuteBatchError, an aio.InternalError), and ``cancelled()`` has not caught up."""

    def __init__(self, requests: list[bytes]) -> None:
        self.requests = requests
        self.aborts: list[grpc.StatusCode] = []

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    async def read(self) -> object:
        if self.requests:
            return self.requests.pop(0)
        await asyncio.sleep(3600)
        return None

    async def write(self, message: bytes) -> None:
        raise cygrpc.ExecuteBatchError("Failed \"execute_batch\": (<SendMessageOperation>,)")

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        if self.aborts:
            raise grpc.aio.UsageError("Abort already called!")
        self.aborts.append(code)
        raise cygrpc.ExecuteBatchError("Failed \"execute_batch\": (<SendStatusFromServerOperation>,)")

    def cancelled(self) -> bool:
        return False


@pytest.mark.parametrize("shutting_down", [False, True])
async def test_a_client_gone_as_its_stream_ends_is_no_error(shutting_down: bool, caplog) -> None:
    """Envoy and xdscp stopped at one moment: the write or the final status finds the client
    gone. That is logged at debug level, once, and abort is never called twice."""
    from xdscp.server.services import _handler
    from xdscp.server.sotw import SotwStream
    from xdscp.translation.publisher import Publisher

    from server_env import server_env

    e = server_env()
    registry = Registry(["s"])
    registry.apply("s", FullSnapshot.of([]))
    Publisher(registry, translator(Config()), e.cache, 0.0, None, {}).publish(set())
    if shutting_down:
        e.shutting_down.set()
    context = VanishedClient([sotw_request(CLUSTER, with_node=node()).SerializeToString()])
    handle = _handler(SotwStream, e, None).stream_stream
    caplog.set_level(logging.DEBUG)
    await asyncio.wait_for(handle(iter(()), context), 10)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "stream.gone" in [r.getMessage() for r in caplog.records]
    assert len(context.aborts) <= 1
