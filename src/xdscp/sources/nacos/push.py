"""One gRPC connection to a Nacos 2.x/3.x server, as its SDKs open it, for push updates.

The order is Nacos': a ``ServerCheckRequest`` (unary) proves the server and names the
connection, then the bidirectional stream opens with a ``ConnectionSetupRequest``;
unary requests (service lists, subscriptions) go over the same HTTP/2 connection, which
is how the server ties them to the stream. The server pushes ``NotifySubscriberRequest``
on the stream whenever a subscribed service changes, and each is answered with a
``NotifySubscriberResponse`` carrying its ``requestId``; so are its connection checks.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from xdscp.errors import XdscpError
from xdscp.logfmt import log_event
from xdscp.nacos_protocol import (
    BI_STREAM_METHOD,
    REQUEST_METHOD,
    SERVER_REQUEST_ANSWERS,
    NacosWireError,
    decode,
    encode,
)

log = logging.getLogger("xdscp.sources.nacos")

CLIENT_VERSION = "xdscp-nacos-push"


class NacosPushError(XdscpError):
    """The gRPC connection failed or the server refused a request."""


class NacosPushSession:
    """A connection whose pushed service updates go to ``on_service(service_info)``."""

    def __init__(self, target: str, namespace: str, headers: dict[str, str],
                 on_service: Callable[[dict[str, Any]], None], timeout: float) -> None:
        self.target = target
        self.namespace = namespace
        self.headers = headers
        self.on_service = on_service
        self.timeout = timeout
        self.connection_id = ""
        self._ids = itertools.count(1)
        self._channel: grpc.aio.Channel | None = None
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.target)
        check = await self.request("ServerCheckRequest", {}, module="internal")
        self.connection_id = str(check.get("connectionId", ""))
        call = self._channel.stream_stream(BI_STREAM_METHOD)(self._requests())
        self._reader = asyncio.create_task(self._read(call))
        self._send("ConnectionSetupRequest", {
            "clientVersion": CLIENT_VERSION, "tenant": self.namespace, "module": "internal",
            "labels": {"source": "sdk", "module": "naming"}, "abilityTable": {}})
        log_event(log, logging.INFO, "source.push_connected", target=self.target, connection=self.connection_id)

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        if self._reader is not None:
            self._reader.cancel()
        if self._channel is not None:
            await self._channel.close()

    async def closed(self) -> None:
        """Return when the stream ends; raise NacosPushError saying why."""
        assert self._reader is not None
        await self._reader
        raise NacosPushError(f"Nacos at {self.target} closed the stream")

    # -- requests -------------------------------------------------------------------
    async def request(self, kind: str, body: dict[str, Any], module: str = "naming") -> dict[str, Any]:
        """A unary request; its answer, or NacosPushError for a transport or server error."""
        assert self._channel is not None
        doc = {"headers": self.headers, "requestId": str(next(self._ids)), "module": module, **body}
        call = self._channel.unary_unary(REQUEST_METHOD)
        try:
            raw = await call(encode(kind, doc, self.headers), timeout=self.timeout)
            answer_type, answer, _ = decode(raw)
        except grpc.aio.AioRpcError as e:
            raise NacosPushError(f"{kind} to {self.target}: {e.code().name} {e.details() or ''}".rstrip()) from None
        except NacosWireError as e:
            raise NacosPushError(f"{kind} to {self.target}: {e}") from None
        if answer_type == "ErrorResponse" or int(answer.get("resultCode", 200)) != 200 \
                or int(answer.get("errorCode", 0) or 0) != 0:
            raise NacosPushError(f"{kind} refused by {self.target}: {answer.get('errorCode')} "
                                 f"{answer.get('message') or answer_type}")
        return answer

    # -- the stream -----------------------------------------------------------------
    def _send(self, kind: str, body: dict[str, Any]) -> None:
        self._outbox.put_nowait(encode(kind, {"headers": {}, **body}, self.headers))

    async def _requests(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._outbox.get()
            if item is None:
                return
            yield item

    async def _read(self, call: Any) -> None:
        try:
            async for raw in call:
                try:
                    kind, body, _ = decode(raw)
                except NacosWireError as e:
                    log_event(log, logging.WARNING, "source.push_rejected", target=self.target, reason=str(e))
                    continue
                self._on_server_request(kind, body)
        except grpc.aio.AioRpcError as e:
            log_event(log, logging.WARNING, "source.push_stream_error", target=self.target,
                      code=e.code().name, details=e.details())

    def _on_server_request(self, kind: str, body: dict[str, Any]) -> None:
        answer = SERVER_REQUEST_ANSWERS.get(kind)
        if kind == "NotifySubscriberRequest" and isinstance(body.get("serviceInfo"), dict):
            self.on_service(body["serviceInfo"])
        if answer is not None:
            self._send(answer, {"requestId": body.get("requestId", ""), "resultCode": 200, "errorCode": 0})
        elif kind == "ConnectResetRequest":
            self._outbox.put_nowait(None)  # the server moves us elsewhere: end, and reconnect
        else:
            log_event(log, logging.DEBUG, "source.push_ignored", target=self.target, type=kind)
