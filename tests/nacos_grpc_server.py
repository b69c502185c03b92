"""A small Nacos 2.x/3.x naming server speaking Nacos' gRPC protocol, for tests only.

No Nacos can be installed here. This follows the protocol as Nacos' SDKs speak it
(ServerCheckRequest, the bidirectional stream opened by ConnectionSetupRequest,
InstanceRequest, SubscribeServiceRequest, ServiceListRequest, HealthCheckRequest, and
NotifySubscriberRequest pushed on the stream), with Nacos 2's rule that an ephemeral
instance lives as long as the connection that registered it. Its fidelity is checked by
driving it with the real nacos-sdk-python 3.x client (test_nacos_push.py).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from xdscp.local.ports import free_port
from xdscp.sources.nacos.protocol import decode, encode

Key = tuple[str, str, str]  # namespace, group, service


@dataclass
class _Connection:
    peer: str
    outbox: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    acks: list[str] = field(default_factory=list)  # requestIds of answered pushes


class NacosGrpcServer:
    """Instances by service; subscribers get a NotifySubscriberRequest on every change."""

    def __init__(self, token: str | None = None) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.token = token
        self.instances: dict[Key, dict[tuple[str, int], dict[str, Any]]] = {}
        self.owners: dict[tuple[Key, str, int], str] = {}  # ephemeral instance -> connection peer
        self.connections: dict[str, _Connection] = {}
        self.subscribers: dict[Key, set[str]] = {}
        self.requests: list[str] = []  # types received, in order
        self.subscribe_answer_delay = 0.0  # seconds a SubscribeServiceResponse waits (computed before)
        self._ids = itertools.count(1)
        self._server: grpc.aio.Server | None = None

    async def start(self) -> NacosGrpcServer:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([
            grpc.method_handlers_generic_handler("Request", {"request": grpc.unary_unary_rpc_method_handler(
                self._unary)}),
            grpc.method_handlers_generic_handler("BiRequestStream", {
                "requestBiStream": grpc.stream_stream_rpc_method_handler(self._bi_stream)}),
        ])
        server.add_insecure_port(self.target)
        await server.start()
        self._server = server
        return self

    async def stop(self) -> None:
        if self._server is not None:
            for conn in self.connections.values():
                conn.outbox.put_nowait(None)
            await self._server.stop(grace=None)
            self._server = None

    # -- what tests do ----------------------------------------------------------------
    def register(self, service: str, ip: str, port: int, group: str = "DEFAULT_GROUP", namespace: str = "public",
                 **fields: Any) -> None:
        """A persistent instance, as if registered by an admin (no connection holds it)."""
        key = (namespace, group, service)
        self.instances.setdefault(key, {})[(ip, port)] = _host(key, ip, port, {"ephemeral": False, **fields})
        self._notify(key)

    def deregister(self, service: str, ip: str, port: int, group: str = "DEFAULT_GROUP",
                   namespace: str = "public") -> None:
        key = (namespace, group, service)
        self.instances.get(key, {}).pop((ip, port), None)
        self._notify(key)

    def hosts(self, service: str, group: str = "DEFAULT_GROUP", namespace: str = "public") -> list[dict[str, Any]]:
        return list(self.instances.get((namespace, group, service), {}).values())

    async def drop_connections(self) -> None:
        """End every client's stream, as a restarting server does."""
        for conn in list(self.connections.values()):
            conn.outbox.put_nowait(None)

    # -- the protocol -----------------------------------------------------------------
    async def _unary(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        kind, body, headers = decode(raw)
        self.requests.append(kind)
        rid = str(body.get("requestId", ""))
        if self.token is not None and kind != "ServerCheckRequest" and headers.get("accessToken") != self.token:
            return encode("ErrorResponse", {"resultCode": 500, "errorCode": 403, "message": "user not found!",
                                            "requestId": rid})
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            return encode("ErrorResponse", {"resultCode": 500, "errorCode": 501,
                                            "message": f"unsupported request type {kind}", "requestId": rid})
        answer_type, answer = handler(body, context.peer())
        if kind == "SubscribeServiceRequest" and self.subscribe_answer_delay:
            await asyncio.sleep(self.subscribe_answer_delay)  # a push may now overtake this answer
        return encode(answer_type, {"resultCode": 200, "errorCode": 0, "message": "", "requestId": rid, **answer})

    async def _bi_stream(self, requests: Any, context: grpc.aio.ServicerContext) -> Any:
        peer = context.peer()
        conn = _Connection(peer)

        async def read() -> None:
            async for raw in requests:
                kind, body, _ = decode(raw)
                self.requests.append(kind)
                if kind == "ConnectionSetupRequest":
                    self.connections[peer] = conn
                elif kind.endswith("Response"):
                    conn.acks.append(str(body.get("requestId", "")))
            conn.outbox.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await conn.outbox.get()) is not None:
                yield item
        finally:
            reader.cancel()
            self._disconnected(peer)

    def _disconnected(self, peer: str) -> None:
        self.connections.pop(peer, None)
        for subs in self.subscribers.values():
            subs.discard(peer)
        for (key, ip, port), owner in list(self.owners.items()):
            if owner == peer:  # Nacos 2: an ephemeral instance dies with its connection
                del self.owners[(key, ip, port)]
                self.instances.get(key, {}).pop((ip, port), None)
                self._notify(key)

    def _on_ServerCheckRequest(self, body: dict[str, Any], peer: str) -> tuple[str, dict[str, Any]]:
        return "ServerCheckResponse", {"connectionId": f"{int(time.time() * 1000)}_{peer}",
                                       "supportAbilityNegotiation": False}

    def _on_HealthCheckRequest(self, body: dict[str, Any], peer: str) -> tuple[str, dict[str, Any]]:
        return "HealthCheckResponse", {}

    def _on_InstanceRequest(self, body: dict[str, Any], peer: str) -> tuple[str, dict[str, Any]]:
        key = _key(body)
        inst = body.get("instance") or {}
        ip, port = str(inst.get("ip")), int(inst.get("port", 0))
        if body.get("type") == "deRegisterInstance":
            self.instances.get(key, {}).pop((ip, port), None)
            self.owners.pop((key, ip, port), None)
        else:
            self.instances.setdefault(key, {})[(ip, port)] = _host(key, ip, port, inst)
            if inst.get("ephemeral", True):
                self.owners[(key, ip, port)] = peer
        self._notify(key)
        return "InstanceResponse", {"type": body.get("type")}

    def _on_SubscribeServiceRequest(self, body: dict[str, Any], peer: str) -> tuple[str, dict[str, Any]]:
        key = _key(body)
        if body.get("subscribe", True):
            self.subscribers.setdefault(key, set()).add(peer)
        else:
            self.subscribers.get(key, set()).discard(peer)
        return "SubscribeServiceResponse", {"serviceInfo": self._service_info(key)}

    def _on_ServiceListRequest(self, body: dict[str, Any], peer: str) -> tuple[str, dict[str, Any]]:
        namespace, group = body.get("namespace") or "public", body.get("groupName") or "DEFAULT_GROUP"
        names = sorted(k[2] for k, v in self.instances.items() if k[:2] == (namespace, group) and v is not None)
        page, size = int(body.get("pageNo", 1)), int(body.get("pageSize", 10))
        return "ServiceListResponse", {"count": len(names), "serviceNames": names[(page - 1) * size: page * size]}

    def _service_info(self, key: Key) -> dict[str, Any]:
        return {"name": key[2], "groupName": key[1], "clusters": "", "cacheMillis": 10000,
                "hosts": self.hosts(key[2], key[1], key[0]), "lastRefTime": int(time.time() * 1000),
                "checksum": "", "allIPs": False, "reachProtectionThreshold": False, "valid": True}

    def _notify(self, key: Key) -> None:
        for peer in sorted(self.subscribers.get(key, ())):
            conn = self.connections.get(peer)
            if conn is not None:
                conn.outbox.put_nowait(encode("NotifySubscriberRequest", {
                    "requestId": str(next(self._ids)), "module": "naming", "headers": {}, "namespace": key[0],
                    "serviceName": key[2], "groupName": key[1], "serviceInfo": self._service_info(key)}))


def _key(body: dict[str, Any]) -> Key:
    name = str(body.get("serviceName", ""))
    group = body.get("groupName") or (name.split("@@", 1)[0] if "@@" in name else "DEFAULT_GROUP")
    return (body.get("namespace") or "public", group, name.split("@@", 1)[-1])


def _host(key: Key, ip: str, port: int, fields: dict[str, Any]) -> dict[str, Any]:
    cluster = fields.get("clusterName") or "DEFAULT"
    return {"instanceId": f"{ip}#{port}#{cluster}#{key[1]}@@{key[2]}", "ip": ip, "port": port,
            "weight": fields.get("weight", 1.0), "healthy": fields.get("healthy", True),
            "enabled": fields.get("enabled", True), "ephemeral": fields.get("ephemeral", True),
            "clusterName": cluster, "serviceName": f"{key[1]}@@{key[2]}", "metadata": fields.get("metadata") or {},
            "instanceHeartBeatInterval": 5000, "instanceHeartBeatTimeOut": 15000, "ipDeleteTimeout": 30000}
