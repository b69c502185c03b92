"""One Nacos SDK connection: what it holds and subscribes to, and what is to be sent to it.

Nacos ties a connection to its transport: the client's ServerCheckRequest, its
bidirectional stream and its unary requests all travel one HTTP/2 connection, so the
peer address names the connection. The connection exists once the stream has carried a
ConnectionSetupRequest, and ends with the stream.

What is sent on the stream is coalesced: server requests (the setup ack, client
detection) queue in order, and a changed service a connection subscribes to is marked
dirty and pushed once, as it is when the push is written.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from xdscp.model.service import ServiceKey
from xdscp.rate_limit import TokenBucket

Address = tuple[str, int]


@dataclass(eq=False, slots=True)
class NacosConnection:
    id: str  # Nacos' connection id, as answered to the ServerCheckRequest
    peer: str  # the transport's peer address (gRPC's context.peer())
    client_version: str
    namespace: str
    bucket: TokenBucket
    last_active: float = field(default_factory=time.monotonic)
    # ephemeral instances this connection registered, per service (Nacos: one registration
    # per service and connection, which a batch registration replaces whole)
    held: dict[ServiceKey, set[Address]] = field(default_factory=dict)
    subscribed: dict[ServiceKey, list[str]] = field(default_factory=dict)  # -> clusters asked for
    outbox: deque[bytes] = field(default_factory=deque)
    dirty: set[ServiceKey] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # held by each write and by the close: a register racing the close cannot outlive it
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    detecting_since: float | None = None  # a ClientDetectionRequest is unanswered since then
    closed: bool = False
    released: bool = False  # its instances were removed (the close was handled)
    pushes: int = 0
    acks: int = 0

    def touch(self) -> None:
        """The client showed it is alive (any request or answer)."""
        self.last_active = time.monotonic()
        self.detecting_since = None

    def send(self, payload: bytes) -> None:
        self.outbox.append(payload)
        self.wake.set()

    def mark_dirty(self, key: ServiceKey) -> None:
        self.dirty.add(key)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()
