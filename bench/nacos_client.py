"""An SDK-like Nacos gRPC client for the benchmarks: a transport of its own, ServerCheck,
the bi-stream's setup, and an answer to every server request, as the SDKs do."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from xdscp.nacos_protocol import BI_STREAM_METHOD, REQUEST_METHOD, decode, encode


class NacosClient:
    """``on_push(body)``: called with each NotifySubscriberRequest, before it is answered."""

    def __init__(self, port: int, on_push: Callable[[dict[str, Any]], None] | None = None,
                 timeout: float = 60.0) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        self.unary = self.channel.unary_unary(REQUEST_METHOD)
        self.on_push = on_push
        self.timeout = timeout
        self._reader: asyncio.Task[None] | None = None
        self._ids = 0

    async def connect(self) -> None:
        await self.call("ServerCheckRequest", {})
        stream = self.channel.stream_stream(BI_STREAM_METHOD)()
        await stream.write(encode("ConnectionSetupRequest", {"clientVersion": "bench", "tenant": "", "labels": {},
                                                             "abilityTable": {}}))
        acked = asyncio.Event()

        async def read() -> None:
            async for raw in stream:
                kind, body, _ = decode(raw)
                if kind == "SetupAckRequest":
                    acked.set()
                    continue
                if kind == "NotifySubscriberRequest" and self.on_push is not None:
                    self.on_push(body)
                if kind.endswith("Request"):
                    await stream.write(encode(kind.removesuffix("Request") + "Response",
                                              {"resultCode": 200, "requestId": body.get("requestId")}))

        self._reader = asyncio.create_task(read())
        await asyncio.wait_for(acked.wait(), self.timeout)

    async def call(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """The answer; RuntimeError if it carries an error code."""
        self._ids += 1
        _, answer, _ = decode(await self.unary(encode(kind, {"requestId": str(self._ids), **body}),
                                               timeout=self.timeout))
        if answer.get("errorCode"):
            raise RuntimeError(f"{kind}: {answer}")
        return answer

    async def register(self, service: str, port: int) -> None:
        await self.call("InstanceRequest", {"namespace": "public", "serviceName": service, "groupName": "DEFAULT_GROUP",
                                            "type": "registerInstance", "instance": {"ip": "127.0.0.1", "port": port}})

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.channel.close()
