"""What SotW and Delta streams share: node binding, nonces, the wake/respond loop."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from envoy.config.core.v3.base_pb2 import Node
from google.protobuf.message import DecodeError

from xdscp.cache import wire
from xdscp.cache.cache import SnapshotCache, View
from xdscp.cache.node_group import DEFAULT_GROUP, NodeGrouper, node_locality
from xdscp.cache.resource import Resource
from xdscp.cache.snapshot import Snapshot
from xdscp.errors import LimitExceeded, PermissionDenied, ProtocolError
from xdscp.logfmt import log_event
from xdscp.rate_limit import TokenBucket
from xdscp.server.authorization import NodePolicy
from xdscp.server.callbacks import StreamCallbacks
from xdscp.server.names_pool import NamesPool
from xdscp.server.subscription import TypeStatus
from xdscp.server.tracker import StreamTracker
from xdscp.type_urls import MCP_TYPES, PUSH_ORDER, canonical

log = logging.getLogger("xdscp.server")

_stream_ids = itertools.count(1)
# context.read of a grpc.aio call: the next request's bytes, or aio.EOF.
Reader = Callable[[], Awaitable[object]]
# DiscoveryResponse.control_plane (6) and DeltaDiscoveryResponse.control_plane (7) carry
# a ControlPlane{identifier=1}; it is constant, so it is encoded once.
CONTROL_PLANE_ID = "xdscp"
# Envoy uses a handful of types per stream; a client asking for more is broken or
# hostile, and each type costs per-stream state.
MAX_TYPES_PER_STREAM = 64
# node.cluster of the workers' relay streams (workers/relay.py). A relay mirrors the owner's
# cache for its workers to serve, so its "*" is every resource of a type, VHDS included
# (an Envoy's VHDS "*" is only its route configuration's namespace).
WORKERS_CLUSTER = "xdscp-workers"


@dataclass(frozen=True, slots=True)
class ServerEnv:
    """What every stream needs from the rest of the control plane."""

    cache: SnapshotCache
    grouper: NodeGrouper
    tracker: StreamTracker
    placeholder: Callable[[str, str], Resource | None]
    limits: StreamLimits
    callbacks: StreamCallbacks
    names: NamesPool = field(default_factory=NamesPool)
    # Set on shutdown: every stream ends after what it is sending, and new ones are refused.
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)
    policy: NodePolicy = field(default_factory=NodePolicy)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Per-process and per-stream bounds; going past one ends the stream (RESOURCE_EXHAUSTED).
    Defaults: config's ``xds.limits``."""

    max_streams: int
    max_names: int  # resource names one stream may subscribe to, per type
    max_requests_per_second: float  # per stream, with a burst of twice that


class Stream(ABC):
    """One xDS stream. A reader task applies requests to per-type state and wakes the
    writer loop, which builds responses for every type in push order."""

    transport: ClassVar[str]
    control_plane_field: ClassVar[int]
    request_cls: ClassVar[Any]  # DiscoveryRequest or DeltaDiscoveryRequest
    state_cls: ClassVar[type[Any]]  # per-type protocol state, with a ``status``

    def __init__(self, env: ServerEnv, fixed_type: str | None, peer: str) -> None:
        self.env = env
        self.fixed_type = fixed_type
        self.peer = peer
        self.id = next(_stream_ids)
        self.opened_at = time.time()  # wall clock, for people reading /debug/nodes
        self.node: Node | None = None
        self.node_id = ""
        self.group: str | None = None  # set when the node is bound
        self.view: View = None  # its locality, when it has one
        self.wake = asyncio.Event()
        self._nonces = itertools.count(1)
        self._cp = wire.field(self.control_plane_field, wire.string_field(1, CONTROL_PLANE_ID))
        self.types: dict[str, Any] = {}
        self.identities: frozenset[str] = frozenset()  # the client's, for the node policy
        self._answered: dict[str, str] = {}  # type URL -> the nonce whose ACK was not rate-counted

    # -- subclass hooks -------------------------------------------------------------
    @abstractmethod
    def on_request(self, req: Any, raw: bytes) -> bool:
        """Apply one request (``raw``: its bytes as received); whether the writer has anything
        to look at. A plain ACK has nothing: what the client holds changes nothing to send,
        and a new snapshot wakes the writer itself."""

    @abstractmethod
    def respond(self, type_url: str, snapshot: Snapshot) -> bytes | None: ...

    # -- shared ---------------------------------------------------------------------
    def parse(self, raw: bytes) -> Any:
        try:
            return self.request_cls.FromString(raw)
        except DecodeError as e:
            raise ProtocolError(f"malformed {self.request_cls.DESCRIPTOR.name}: {e}", "malformed") from None

    def statuses(self) -> dict[str, TypeStatus]:
        return {t: st.status for t, st in self.types.items()}

    def state_for(self, req: Any) -> tuple[str, Any]:
        """Bind the node (first message), check the type URL, and get that type's state."""
        self.bind_node(req.node if req.HasField("node") else None)
        type_url = self.resolve_type(req.type_url)
        st = self.types.get(type_url)
        if st is None:
            if len(self.types) >= MAX_TYPES_PER_STREAM:
                raise ProtocolError(f"more than {MAX_TYPES_PER_STREAM} type URLs on one stream", "too_many_types")
            st = self.types[type_url] = self.new_state(type_url)
            self.env.callbacks.type_added(self, type_url)
            self._warn_if_not_served(type_url)
        return type_url, st

    def new_state(self, type_url: str) -> Any:
        """A new subscription to ``type_url`` on this stream."""
        return self.state_cls()

    def _warn_if_not_served(self, type_url: str) -> None:
        snapshot = self.env.cache.get(self.view) if self.group is not None else None
        if snapshot is None or snapshot.serves(type_url):
            return
        mcp = canonical(type_url) in MCP_TYPES
        hint = "set mcp.enabled: true to serve it" if mcp else "answered empty"
        log_event(log, logging.WARNING if mcp else logging.INFO, "xds.type_not_served",
                  node=self.node_id, type=type_url, stream=self.id, hint=hint)

    def resolve_type(self, type_url: str) -> str:
        """The request's type, checked against the service it came in on."""
        if self.fixed_type is None:
            if not type_url:
                raise ProtocolError("type_url is required on the aggregated (ADS) service", "type_url")
            return type_url
        if type_url and type_url != self.fixed_type:
            raise ProtocolError(f"type_url {type_url!r} on the service for {self.fixed_type!r}", "type_url")
        return self.fixed_type

    def bind_node(self, node: Node | None) -> None:
        """Remember the node from the first message that carries one (Envoy may send it once)."""
        if self.group is not None:
            return
        if node is not None:
            self.node = node
            self.node_id = node.id
        group = self.env.grouper(node) if node is not None else DEFAULT_GROUP
        refused = self.env.policy.check(self.identities, self.node_id, group)
        if refused is not None:
            raise PermissionDenied(refused)
        self.group = group
        self.view = node_locality(node) if node is not None else None
        self.env.cache.watch(self.view, self.wake)
        self.env.callbacks.node_bound(self)

    def next_nonce(self) -> str:
        return f"{self.id}-{next(self._nonces)}"

    def ordered(self, type_urls: list[str]) -> list[str]:
        known = [t for t in PUSH_ORDER if t in type_urls]
        return known + [t for t in type_urls if t not in PUSH_ORDER]

    async def serve(self, read: Reader) -> AsyncIterator[bytes]:
        """Yield encoded responses until the client closes or breaks the protocol.

        ``read`` is the call's ``context.read``: unlike grpc's request iterator, it keeps
        no reference to the last request.
        """
        callbacks = self.env.callbacks
        # The server's own state (the stream limit, the shutdown drain count on it): kept here,
        # whatever the callbacks do; they only observe.
        self.env.tracker.add(self)
        callbacks.opened(self)
        reader = asyncio.ensure_future(self._read(read))
        reader.add_done_callback(lambda _: self.wake.set())
        served_at = 0.0  # changed_at of the last snapshot this stream answered from
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if self.env.shutting_down.is_set():
                    return
                if reader.done():
                    reader.result()  # re-raise a protocol error
                    return
                snapshot = self.env.cache.get(self.view) if self.group is not None else None
                if snapshot is None:
                    continue  # nothing published yet: never serve an empty world
                pushed = False
                for type_url in self.ordered(list(self.types)):
                    msg = self.respond(type_url, snapshot)
                    if msg is not None:
                        yield msg
                        pushed = True
                        # An idle stream must not pin its last response: the first one
                        # can be the whole snapshot (600 KB for 1,000 assignments).
                        del msg
                if pushed and served_at and snapshot.changed_at > served_at:
                    # A change reaching a stream that had been served before: a push.
                    callbacks.pushed(self, time.monotonic() - snapshot.changed_at)
                served_at = max(served_at, snapshot.changed_at)
                del snapshot
        finally:
            reader.cancel()
            if self.group is not None:
                self.env.cache.unwatch(self.view, self.wake)
            self.env.tracker.remove(self)
            callbacks.closed(self)

    async def _read(self, read: Reader) -> None:
        bucket = TokenBucket(self.env.limits.max_requests_per_second)
        while True:
            raw = await read()
            if not isinstance(raw, bytes):
                return  # aio.EOF: the client closed its side
            req = self.parse(raw)
            if not self._answers_last_response(req):
                # ACKs/NACKs of our own latest response are as frequent as our pushes and are
                # not counted; requests the client starts on its own are.
                if not bucket.take():
                    raise LimitExceeded(f"more than {bucket.rate:g} requests per second on one stream",
                                        "request_rate")
            respond = self.on_request(req, raw)
            del req
            del raw  # nor its last request while it waits for the next
            if respond:
                self.wake.set()

    def _answers_last_response(self, req: Any) -> bool:
        """True for the first request answering our latest response of its type (its ACK or NACK)."""
        nonce = req.response_nonce
        type_url = self.fixed_type or req.type_url
        st = self.types.get(type_url)
        if not nonce or st is None or st.nonce != nonce or self._answered.get(type_url) == nonce:
            return False
        self._answered[type_url] = nonce  # a replay of it counts like any other request
        return True

    def check_names(self, count: int) -> None:
        """Refuse a subscription of more than the configured number of names."""
        if count > self.env.limits.max_names:
            raise LimitExceeded(f"{count} resource names on one stream (limit {self.env.limits.max_names})",
                                "names")

    @staticmethod
    def nack_error(req: Any) -> str | None:
        """The NACK reason of a request, or None when it is an ACK (no error_detail)."""
        if not req.HasField("error_detail"):
            return None
        detail = req.error_detail
        return detail.message or f"rejected with code {detail.code}"

    def record_ack(self, status: TypeStatus, type_url: str, version: str, nonce: str,
                   error_message: str | None) -> None:
        """Book an ACK or NACK of our last response."""
        if error_message is None:
            status.acks += 1
            status.version_acked = version
            self.env.callbacks.acked(self, type_url, version, nonce)
            return
        status.nacks += 1
        if version:  # a NACK carries the version the client kept: that is what it holds now
            status.version_acked = version
        rejected = status.version_sent
        repeated = status.last_nack_version == rejected and status.last_nack == error_message
        self.env.callbacks.nacked(self, type_url, rejected, version, nonce, error_message, repeated)
        status.last_nack = error_message
        status.last_nack_version = rejected

    def record_response(self, status: TypeStatus, type_url: str, version: str, nonce: str,
                        resources: int, removed: int = 0) -> None:
        status.responses += 1
        status.version_sent = version
        status.nonce_sent = nonce
        self.env.callbacks.responded(self, type_url, version, nonce, resources, removed)
