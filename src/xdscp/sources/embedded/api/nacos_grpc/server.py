"""The embedded registry's Nacos 2.x/3.x gRPC face: where Nacos SDKs register and subscribe.

The protocol, as the Nacos server speaks it (core/remote/grpc):
- ``Request/request`` (unary): ServerCheckRequest answers the connection id and that
  abilities are negotiated; every other request needs its connection set up first
  (else UN_REGISTER, 301), a known type (else NO_HANDLER, 302) and a payload that parses
  (else BAD_GATEWAY, 502).
- ``BiRequestStream/requestBiStream``: the client's ConnectionSetupRequest opens the
  connection; the server answers a SetupAckRequest with its abilities (among them
  ``supportPersistentInstanceByGrpc``, so Java 2.x/3.x clients register persistent
  instances here too) and pushes NotifySubscriberRequest and ClientDetectionRequest.
- An ephemeral instance lives as long as the connection that registered it: when the
  stream ends, or the client stops answering client detection, its instances go.

Every answer to a bad request is a Nacos error response on that call: no request can
end another client's connection, and none can stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

from xdscp.addresses import split_host_port
from xdscp.background import cancel_and_wait
from xdscp.credentials import Credentials
from xdscp.errors import BindError
from xdscp.grpc_options import ACCEPT_STORMS, KEEPALIVE
from xdscp.logfmt import log_event
from xdscp.metrics import NACOS_GRPC_CONNECTIONS, NACOS_GRPC_PUSHES, NACOS_GRPC_REQUESTS
from xdscp.model.service import DEFAULT_NAMESPACE, ServiceKey
from xdscp.nacos_protocol import NacosWireError, decode, encode, message_type
from xdscp.rate_limit import TokenBucket
from xdscp.server.tls import TlsSettings, server_credentials
from xdscp.sources.embedded.api.nacos_grpc.connection import NacosConnection
from xdscp.sources.embedded.api.nacos_grpc.naming import (
    BAD_GATEWAY,
    INVALID_PARAM,
    NO_HANDLER,
    NO_RIGHT,
    OVER_THRESHOLD,
    SERVER_ERROR,
    UN_REGISTER,
    WRITES,
    NacosRequestError,
    NamingRequests,
)
from xdscp.sources.embedded.api.nacos_views import HeartbeatPolicy
from xdscp.sources.embedded.api.request_params import ParamError
from xdscp.sources.embedded.contract import RegistryStore, StoreUnavailable

log = logging.getLogger(__name__)

# Requests the per-connection rate limit leaves alone. An SDK subscribes to every service
# at once on its first sync and again after each reconnect (Higress' McpBridge: all of
# them); nacos-sdk-go reads a refusal as success, so a refused subscription would be lost.
# max_subscriptions bounds them instead.
UNLIMITED = frozenset({"SubscribeServiceRequest"})

# What this server tells clients it can do (Nacos' AbilityKey names, server side).
SERVER_ABILITIES = {"supportPersistentInstanceByGrpc": True}


Answered = tuple[str, int, bytes]  # the request's type, the Nacos error code answered (0: served), the answer


def _failed(request_type: str, code: int, message: str, request_id: str = "",
            response_type: str = "ErrorResponse") -> Answered:
    body = {"resultCode": 500, "errorCode": code, "message": message, "requestId": request_id}
    return request_type, code, encode(response_type, body)


def _served(request_type: str, response_type: str, request_id: str, fields: dict[str, Any]) -> Answered:
    body = {"resultCode": 200, "errorCode": 0, "message": "", "requestId": request_id, **fields}
    return request_type, 0, encode(response_type, body)


@dataclass(frozen=True, slots=True)
class NacosGrpcSettings:
    """The Nacos gRPC face: where (``address`` None: the admin port + 1000), its own TLS
    (None: the admin address's), and its limits and client detection."""

    enabled: bool
    address: str | None
    tls: TlsSettings | None
    max_message_bytes: int
    max_connections: int
    max_subscriptions: int
    max_requests_per_second: float
    keepalive_time: float
    detection_timeout: float
    detection_interval: float


class NacosGrpcServer:
    """Serves Nacos' gRPC protocol over ``store``; ``start`` binds, ``stop`` closes every connection."""

    def __init__(self, store: RegistryStore, settings: NacosGrpcSettings, beats: HeartbeatPolicy,
                 credentials: Credentials) -> None:
        self.store = store
        self.settings = settings
        self.naming = NamingRequests(store, beats, settings.max_subscriptions)
        self.credentials = credentials
        self.connections: dict[str, NacosConnection] = {}  # by peer
        self._push_ids = itertools.count(1)
        self._server: aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self._detection = encode("ClientDetectionRequest", {"requestId": "detect", "module": "internal",
                                                            "headers": {}})
        self._reset = encode("ConnectResetRequest", {"requestId": "reset", "module": "internal", "headers": {},
                                                     "serverIp": "", "serverPort": ""})
        # Each push is encoded once per change and shared by every subscriber asking for the
        # same clusters: service -> clusters -> the NotifySubscriberRequest bytes.
        self._encoded: dict[ServiceKey, dict[tuple[str, ...], bytes]] = {}
        store.add_listener(self._changed)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, address: str, tls: TlsSettings | None = None) -> int:
        """Listen on ``address`` (port 0: any free one), with ``tls`` when given; the port bound."""
        server = aio.server(options=nacos_server_options(self.settings.max_message_bytes))
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("Request", {
                "request": grpc.unary_unary_rpc_method_handler(self._unary)}),
            grpc.method_handlers_generic_handler("BiRequestStream", {
                "requestBiStream": grpc.stream_stream_rpc_method_handler(self._bi_stream)}),
        ))
        split_host_port(address)
        try:
            port = (server.add_secure_port(address, server_credentials(tls)) if tls is not None
                    else server.add_insecure_port(address))
        except RuntimeError as e:
            raise BindError("nacos gRPC", address, str(e)) from None
        if port == 0:
            raise BindError("nacos gRPC", address, "the port is in use or the address is not local")
        await server.start()
        self._server = server
        self.port = port
        self._tasks.append(asyncio.create_task(self._detect_forever()))
        log_event(log, logging.INFO, "nacos_grpc.started", address=address, port=port, tls=tls is not None,
                  mtls=tls is not None and tls.client_ca_file is not None)
        return port

    async def stop(self, grace: float = 0.0) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        for conn in list(self.connections.values()):
            conn.close()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    # -- the unary service -------------------------------------------------------------------
    async def _unary(self, raw: bytes, context: aio.ServicerContext) -> bytes:
        kind, code, answer = await self._answer(raw, context.peer())
        # counted by the type asked (known types only: a label per garbage name would grow
        # without bound) and the error code answered (0: served)
        NACOS_GRPC_REQUESTS.labels(kind if kind in self.naming.handlers or kind == "ServerCheckRequest"
                                   else "other", str(code)).inc()
        return answer

    async def _answer(self, raw: bytes, peer: str) -> Answered:
        try:
            kind, body, headers = decode(raw)
        except NacosWireError as e:
            log_event(log, logging.WARNING, "nacos_grpc.bad_request", peer=peer, reason=str(e))
            return _failed("malformed", BAD_GATEWAY, str(e))
        rid = str(body.get("requestId", ""))
        if kind == "ServerCheckRequest":
            return _served(kind, "ServerCheckResponse", rid, {"connectionId": self._connection_id(peer),
                                                              "supportAbilityNegotiation": True})
        handler = self.naming.handlers.get(kind)
        if handler is None:
            log_event(log, logging.WARNING, "nacos_grpc.no_handler", peer=peer, type=kind)
            return _failed(kind, NO_HANDLER, f"RequestHandler Not Found: {kind}", rid)
        conn = self.connections.get(peer)
        if conn is None or conn.closed:
            return _failed(kind, UN_REGISTER, "Connection is unregistered.", rid)
        conn.touch()
        answer_kind = _response_type(kind)
        if kind not in UNLIMITED and not conn.bucket.take():
            log_event(log, logging.WARNING, "nacos_grpc.limit", connection=conn.id, type=kind,
                      limit="request_rate", max_requests_per_second=conn.bucket.rate)
            return _failed(kind, OVER_THRESHOLD,
                           f"more than {conn.bucket.rate:g} requests per second on one connection", rid, answer_kind)
        if not self._authorized(kind, headers, body):
            log_event(log, logging.WARNING, "nacos_grpc.denied", connection=conn.id, type=kind)
            return _failed(kind, NO_RIGHT, "authorization failed: a valid accessToken is required", rid,
                          answer_kind)
        try:
            if kind in WRITES:
                async with conn.lock:
                    if conn.closed:
                        return _failed(kind, UN_REGISTER, "Connection is unregistered.", rid)
                    answer_kind, fields = await handler(conn, body)
            else:
                answer_kind, fields = await handler(conn, body)
        except (NacosRequestError, ParamError) as e:
            code = e.code if isinstance(e, NacosRequestError) else INVALID_PARAM
            log_event(log, logging.INFO, "nacos_grpc.refused", connection=conn.id, type=kind, code=code,
                      reason=str(e))
            return _failed(kind, code, str(e), rid, answer_kind)
        except StoreUnavailable as e:
            return _failed(kind, SERVER_ERROR, str(e), rid, answer_kind)
        except Exception as e:  # a bug answers this request only
            log.exception("nacos request failed", extra={"xdscp_fields": {"connection": conn.id, "type": kind}})
            return _failed(kind, SERVER_ERROR, f"xdscp internal error: {type(e).__name__}", rid, answer_kind)
        return _served(kind, answer_kind, rid, fields)

    @staticmethod
    def _connection_id(peer: str) -> str:
        """Nacos' form: ``<ms>_<ip>_<port>`` of the transport. It only names the connection in
        logs: the transport itself (the peer) is what requests are matched by."""
        host, _, port = peer.rpartition(":")
        return f"{int(time.time() * 1000)}_{host.partition(':')[2] or host}_{port}"

    def _authorized(self, kind: str, headers: dict[str, str], body: dict[str, Any]) -> bool:
        """Writes need the write token or a writing user's; with users configured, reads a user's."""
        token = headers.get("accessToken")
        inner = body.get("headers")
        if not token and isinstance(inner, dict):
            token = inner.get("accessToken")
        token = token if isinstance(token, str) else None
        if kind in WRITES:
            return self.credentials.may_write(token)
        return kind == "HealthCheckRequest" or self.credentials.may_read(token)

    # -- the stream --------------------------------------------------------------------------
    async def _bi_stream(self, _requests: Any, context: aio.ServicerContext) -> None:
        peer = context.peer()
        conn: NacosConnection | None = None
        opened = asyncio.Event()

        async def read() -> None:
            nonlocal conn
            try:
                while True:
                    raw = await context.read()
                    if not isinstance(raw, bytes):
                        return  # the client closed its side
                    if conn is not None:
                        # set up: what comes now are answers to our requests; their type is enough
                        kind = message_type(raw)
                        if kind is None:
                            log_event(log, logging.WARNING, "nacos_grpc.bad_stream_message", connection=conn.id)
                            continue
                        conn.touch()
                        if kind == "NotifySubscriberResponse":
                            conn.acks += 1
                        continue
                    try:
                        kind, body, _ = decode(raw)
                    except NacosWireError as e:
                        log_event(log, logging.WARNING, "nacos_grpc.bad_stream_message", peer=peer, reason=str(e))
                        continue  # as Nacos: logged and dropped, the stream stays
                    if kind != "ConnectionSetupRequest":
                        log_event(log, logging.WARNING, "nacos_grpc.before_setup", peer=peer, type=kind)
                        continue
                    conn = self._open(peer, body)
                    if conn is None:  # over the limit: as Nacos, ask it to connect elsewhere, and end
                        await context.write(self._reset)
                        return
                    opened.set()
            finally:
                opened.set()
                if conn is not None:
                    conn.close()  # wakes the writer: the stream is over

        reader = asyncio.create_task(read())
        try:
            await opened.wait()
            if conn is not None:
                await self._write(conn, context)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if conn is not None:
                await self._closed(conn, "stream ended")

    async def _write(self, conn: NacosConnection, context: aio.ServicerContext) -> None:
        """Send what the connection has queued and its dirty services, until it closes."""
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            if conn.closed:
                return
            while conn.outbox:
                await context.write(conn.outbox.popleft())
            while conn.dirty:
                batch = sorted(conn.dirty)  # one ordered pass; what turns dirty meanwhile, the next
                conn.dirty.clear()
                for key in batch:
                    clusters = conn.subscribed.get(key)
                    if clusters is not None:
                        await context.write(self._push(key, clusters))
                        conn.pushes += 1
                        NACOS_GRPC_PUSHES.inc()

    def _open(self, peer: str, body: dict[str, Any]) -> NacosConnection | None:
        if len(self.connections) >= self.settings.max_connections:
            log_event(log, logging.WARNING, "nacos_grpc.limit", peer=peer, limit="connections",
                      max_connections=self.settings.max_connections)
            return None
        old = self.connections.get(peer)
        if old is not None:
            old.close()
        tenant = body.get("tenant")
        conn = NacosConnection(
            id=self._connection_id(peer), peer=peer, client_version=str(body.get("clientVersion") or ""),
            namespace=tenant if isinstance(tenant, str) and tenant else DEFAULT_NAMESPACE,
            bucket=TokenBucket(self.settings.max_requests_per_second))
        self.connections[peer] = conn
        NACOS_GRPC_CONNECTIONS.set(len(self.connections))
        if body.get("abilityTable") is not None:  # the client negotiates: tell it ours
            conn.send(encode("SetupAckRequest", {"requestId": str(next(self._push_ids)), "module": "internal",
                                                 "headers": {}, "abilityTable": SERVER_ABILITIES}))
        log_event(log, logging.INFO, "nacos_grpc.connected", connection=conn.id, peer=peer,
                  client_version=conn.client_version, namespace=conn.namespace)
        return conn

    async def _closed(self, conn: NacosConnection, reason: str) -> None:
        """Forget the connection and remove its instances (pushed at once); once per connection."""
        if conn.released:
            return
        conn.released = True
        conn.close()
        if self.connections.get(conn.peer) is conn:
            del self.connections[conn.peer]
            NACOS_GRPC_CONNECTIONS.set(len(self.connections))
        self.naming.forget(conn)
        async with conn.lock:
            try:
                removed = await self.naming.release_all(conn)
            except StoreUnavailable as e:
                removed = -1
                log_event(log, logging.WARNING, "nacos_grpc.release_failed", connection=conn.id, reason=str(e))
        log_event(log, logging.INFO, "nacos_grpc.disconnected", connection=conn.id, reason=reason,
                  instances_removed=removed, pushes=conn.pushes, acks=conn.acks)

    def _push(self, key: ServiceKey, clusters: list[str]) -> bytes:
        """The service's push as it is now, encoded once for every subscriber of those clusters.
        They share its requestId: the server matches answers by connection, never by id."""
        variants = self._encoded.setdefault(key, {})
        cached = variants.get(tuple(clusters))
        if cached is None:
            cached = variants[tuple(clusters)] = encode("NotifySubscriberRequest", {
                "requestId": str(next(self._push_ids)), "module": "naming", "headers": {},
                "namespace": key.namespace, "serviceName": key.name, "groupName": key.group,
                "serviceInfo": self.naming.service_info(key, clusters)})
        return cached

    def _changed(self, keys: frozenset[ServiceKey] | None) -> None:
        if keys is None:  # a reload: every subscription may have changed
            keys = frozenset(self.naming.subscribers)
            self._encoded.clear()
        for key in keys:
            self._encoded.pop(key, None)
            for conn in self.naming.subscribers.get(key, ()):
                conn.mark_dirty(key)

    # -- client detection --------------------------------------------------------------------
    async def _detect_forever(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(s.detection_interval)
            now = time.monotonic()
            for conn in list(self.connections.values()):
                if conn.detecting_since is not None:
                    if now - conn.detecting_since >= s.detection_timeout:
                        log_event(log, logging.WARNING, "nacos_grpc.client_silent", connection=conn.id,
                                  silent_s=round(now - conn.last_active, 1))
                        await self._closed(conn, "no answer to client detection")
                elif now - conn.last_active >= s.keepalive_time:
                    conn.detecting_since = now
                    conn.send(self._detection)  # the same bytes for all: the answer is matched by connection


def nacos_server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """The gRPC options of the Nacos face (and of the benchmark's floor, to be fair to it)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", -1),
        *KEEPALIVE,  # SDKs ping (Java: keepAliveTime; Python: max_keep_alive_ms): allowed
        *ACCEPT_STORMS,  # a fleet of SDKs reconnecting at once is accepted, not cancelled
    ]


def _response_type(request_type: str) -> str:
    """The response type a request expects (Nacos names them after the request)."""
    special = {"ServiceQueryRequest": "QueryServiceResponse", "PersistentInstanceRequest": "InstanceResponse"}
    return special.get(request_type, request_type.removesuffix("Request") + "Response")
