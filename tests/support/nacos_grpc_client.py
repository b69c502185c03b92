"""A scripted client of the embedded registry's Nacos gRPC face, speaking the wire as the
Nacos SDKs do (unary requests, the bi-stream set up with ConnectionSetupRequest, answers
to pushes and client detection), and the plane that serves it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc

from xdscp.nacos_protocol import BI_STREAM_METHOD, REQUEST_METHOD, decode, encode
from xdscp.sources.embedded.source import EmbeddedSource

from plane import Plane, embedded_source, running_plane
from waiting import eventually


class Client:
    """One transport: unary calls and, after ``setup``, the bidirectional stream."""

    def __init__(self, port: int) -> None:
        # a transport of its own, as SDKs make sure of: Nacos names a connection by its transport
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        self.unary = self.channel.unary_unary(REQUEST_METHOD)
        self.stream: Any = None
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.answer_detection = True
        self._reader: asyncio.Task[None] | None = None

    async def call(self, kind: str, body: dict[str, Any], headers: dict[str, str] | None = None,
                   raw: bytes | None = None) -> tuple[str, dict[str, Any]]:
        reply = await self.unary(raw if raw is not None else encode(kind, body, headers), timeout=10)
        kind, body, _ = decode(reply)
        return kind, body

    async def setup(self) -> None:
        self.stream = self.channel.stream_stream(BI_STREAM_METHOD)()
        await self.stream.write(encode("ConnectionSetupRequest", {"clientVersion": "test", "tenant": "",
                                                                  "labels": {}, "abilityTable": {}}))
        self._reader = asyncio.create_task(self._read())
        await eventually(lambda: any(k == "SetupAckRequest" for k, _ in self.received), timeout=10,
                         what="SetupAckRequest")

    async def _read(self) -> None:
        async for raw in self.stream:
            kind, body, _ = decode(raw)
            self.received.append((kind, body))
            answer = {"ClientDetectionRequest": "ClientDetectionResponse",
                      "NotifySubscriberRequest": "NotifySubscriberResponse"}.get(kind)
            if answer and (self.answer_detection or kind != "ClientDetectionRequest"):
                await self.stream.write(encode(answer, {"resultCode": 200, "requestId": body.get("requestId")}))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.channel.close()


def register(port: int, service: str = "echo", kind: str = "registerInstance") -> dict[str, Any]:
    return {"requestId": "1", "namespace": "public", "serviceName": service, "groupName": "DEFAULT_GROUP",
            "type": kind, "instance": {"ip": "127.0.0.1", "port": port, "weight": 1.0, "healthy": True,
                                       "enabled": True, "ephemeral": True, "clusterName": "", "metadata": {}}}


def grpc_port(plane: Plane) -> int:
    src = plane.cp.sources[0]
    assert isinstance(src, EmbeddedSource) and src.nacos_grpc is not None
    return src.nacos_grpc.port


@asynccontextmanager
async def running_nacos_plane(tmp_path: Path, admin: dict[str, Any] | None = None,
                              **grpc_settings: Any) -> AsyncIterator[Plane]:
    """A plane on the embedded registry with its Nacos gRPC face (``grpc_settings``); stopped on exit."""
    async with running_plane(tmp_path, None, published=False, admin=admin or {}, sources=[embedded_source(
            tmp_path, nacos_grpc={"address": "127.0.0.1:0", "max_message_bytes": 64 * 1024, **grpc_settings})]) as p:
        yield p


@asynccontextmanager
async def connected(plane: Plane, set_up: bool) -> AsyncIterator[Client]:
    """A client of the plane's gRPC face (its stream set up with ``set_up``), closed on exit."""
    c = Client(grpc_port(plane))
    try:
        if set_up:
            await c.setup()
        yield c
    finally:
        await c.close()
