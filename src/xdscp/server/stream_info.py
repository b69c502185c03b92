"""What the tracker and the callbacks may read of a stream: a small protocol, so neither
depends on the Stream class (nor Stream on them, beyond calling them)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from envoy.config.core.v3.base_pb2 import Node

if TYPE_CHECKING:
    from xdscp.model.locality import Locality
    from xdscp.server.subscription import TypeStatus


class StreamInfo(Protocol):
    id: int
    peer: str
    opened_at: float  # wall clock
    node: Node | None
    node_id: str
    group: str | None  # set once the node is bound
    view: Locality | None
    wake: asyncio.Event
    types: dict[str, Any]  # type URL -> its subscription state

    @property
    def transport(self) -> str:
        """``sotw`` or ``delta``."""

    def statuses(self) -> dict[str, TypeStatus]: ...
