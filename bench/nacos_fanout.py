"""Nacos push fan-out, for bench/nacos_capacity.py --fanout: subscriber processes, and the
floor they are compared with.

A subscriber is an SDK-like connection (ServerCheck, the bi-stream with
ConnectionSetupRequest, SubscribeServiceRequest) that answers every push as the SDKs do
(NotifySubscriberResponse) and stamps the wall-clock time a push carrying the round's
weight arrives. Subscribers run ``PER_PROCESS`` to a spawned process.

The floor is a bare grpc.aio server speaking the least of the same protocol: it answers
ServerCheck and SubscribeServiceRequest, acks the setup, and on ``POST /push?weight=W``
writes one pre-encoded NotifySubscriberRequest (the same service of 100 instances) to
every stream with ``context.write``, reading their answers; nothing else.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
from aiohttp import web
from nacos_client import NacosClient

from xdscp.nacos_protocol import decode, encode, message_type

PER_PROCESS = 1250
SERVICE = "hot"
VICTIM = ("10.0.0.1", 8080)  # the instance whose weight each round changes


def hosts(weight: float) -> list[dict[str, Any]]:
    """The service's 100 instances as Nacos shows them, the victim at ``weight``."""
    out = []
    for i in range(100):
        ip = f"10.0.0.{i + 1}"
        out.append({"instanceId": f"{ip}#8080#DEFAULT#DEFAULT_GROUP@@{SERVICE}", "ip": ip, "port": 8080,
                    "weight": weight if (ip, 8080) == VICTIM else 1.0, "healthy": True, "enabled": True,
                    "ephemeral": False, "clusterName": "DEFAULT", "serviceName": f"DEFAULT_GROUP@@{SERVICE}",
                    "metadata": {"version": "v1", "zone": "z1"}, "instanceHeartBeatInterval": 5000,
                    "instanceHeartBeatTimeOut": 15000, "ipDeleteTimeout": 30000, "instanceIdGenerator": "simple"})
    return out


def victim_weight(body: dict[str, Any]) -> float | None:
    for h in body.get("serviceInfo", {}).get("hosts", ()):
        if (h.get("ip"), h.get("port")) == VICTIM:
            return float(h["weight"])
    return None


class Subscriber:
    """An SDK-like connection subscribed to SERVICE, stamping when a push carries ``expect``."""

    def __init__(self, port: int) -> None:
        self.client = NacosClient(port, on_push=self._pushed, timeout=120)
        self.expect: float | None = None
        self.arrived: asyncio.Event = asyncio.Event()
        self.stamp = 0.0

    def _pushed(self, body: dict[str, Any]) -> None:
        if self.expect is not None and victim_weight(body) == self.expect and not self.arrived.is_set():
            self.stamp = time.time()
            self.arrived.set()

    async def start(self) -> None:
        await self.client.connect()
        await self.client.call("SubscribeServiceRequest", {"namespace": "public", "serviceName": SERVICE,
                                                           "groupName": "DEFAULT_GROUP", "subscribe": True,
                                                           "clusters": ""})

    async def close(self) -> None:
        await self.client.close()


def subscriber_worker(port: int, count: int, rounds: int, conn: Any) -> None:
    """``count`` subscribers; per round (the driver sends the weight), the time each got it."""
    import uvloop

    async def main() -> None:
        subs = [Subscriber(port) for _ in range(count)]
        sem = asyncio.Semaphore(100)
        failures: list[str] = []

        async def start(s: Subscriber) -> None:
            async with sem:
                try:
                    await s.start()
                except (grpc.aio.AioRpcError, RuntimeError, TimeoutError) as e:
                    failures.append(str(e)[:200])

        await asyncio.gather(*(start(s) for s in subs))
        conn.send(failures)
        loop = asyncio.get_running_loop()
        for _ in range(rounds):
            weight = await loop.run_in_executor(None, conn.recv)
            for s in subs:
                s.expect, s.stamp = weight, 0.0
                s.arrived.clear()
            conn.send("ready")  # expecting it before the driver makes the change
            try:
                await asyncio.wait_for(asyncio.gather(*(s.arrived.wait() for s in subs)), 120)
            except TimeoutError:
                pass  # the driver reports fewer stamps than subscribers
            conn.send([s.stamp for s in subs if s.arrived.is_set()])
        await loop.run_in_executor(None, conn.recv)
        await asyncio.gather(*(s.close() for s in subs))
        conn.send("closed")

    uvloop.run(main())


def floor_server(port: int, control_port: int, options: list[tuple[str, Any]]) -> None:
    """The bare server (a spawned process): see the module's docstring."""
    import uvloop

    streams: dict[str, tuple[asyncio.Event, list[bytes]]] = {}

    async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        kind, body, _ = decode(raw)
        rid = body.get("requestId", "")
        if kind == "ServerCheckRequest":
            return encode("ServerCheckResponse", {"resultCode": 200, "errorCode": 0, "requestId": rid,
                                                  "connectionId": context.peer()})
        if kind == "SubscribeServiceRequest":
            return encode("SubscribeServiceResponse", {"resultCode": 200, "errorCode": 0, "requestId": rid,
                                                       "serviceInfo": {"name": SERVICE, "hosts": hosts(1.0)}})
        return encode("ErrorResponse", {"resultCode": 500, "errorCode": 302, "requestId": rid})

    async def bi(_requests: Any, context: grpc.aio.ServicerContext) -> None:
        raw = await context.read()
        if not isinstance(raw, bytes) or message_type(raw) != "ConnectionSetupRequest":
            return
        wake, pending = asyncio.Event(), list[bytes]()
        streams[context.peer()] = (wake, pending)
        await context.write(encode("SetupAckRequest", {"requestId": "1", "module": "internal", "headers": {},
                                                       "abilityTable": {}}))

        async def drain_answers() -> None:
            while isinstance(await context.read(), bytes):
                pass  # an SDK's NotifySubscriberResponse: its type is all a server looks at
            wake.set()

        reader = asyncio.create_task(drain_answers())
        try:
            while not reader.done():
                await wake.wait()
                wake.clear()
                while pending:
                    await context.write(pending.pop(0))
        finally:
            reader.cancel()
            streams.pop(context.peer(), None)

    async def push(request: web.Request) -> web.Response:
        weight = float(request.query["weight"])
        payload = encode("NotifySubscriberRequest", {
            "requestId": str(time.monotonic_ns()), "module": "naming", "headers": {}, "namespace": "public",
            "serviceName": SERVICE, "groupName": "DEFAULT_GROUP",
            "serviceInfo": {"name": SERVICE, "groupName": "DEFAULT_GROUP", "clusters": "", "cacheMillis": 10000,
                            "hosts": hosts(weight), "lastRefTime": int(time.time() * 1000), "checksum": "",
                            "allIPs": False, "reachProtectionThreshold": False, "valid": True}})
        for wake, pending in streams.values():
            pending.append(payload)
            wake.set()
        return web.json_response({"streams": len(streams)})

    async def main() -> None:
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("Request", {"request": grpc.unary_unary_rpc_method_handler(unary)}),
            grpc.method_handlers_generic_handler("BiRequestStream", {
                "requestBiStream": grpc.stream_stream_rpc_method_handler(bi)}),
        ))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        app = web.Application()
        app.router.add_post("/push", push)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", control_port).start()
        await server.wait_for_termination()

    uvloop.run(main())


def json_body(weight: float) -> bytes:
    return json.dumps({"weight": weight}).encode()
