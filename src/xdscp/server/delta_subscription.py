"""One type's subscription on a Delta stream: what the client holds, what it asked for since
the last response, and how its requests name resources. VHDS, which names by Host, is the
one type that differs (``server/vhds.py``)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import ClassVar

from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest

from xdscp.server.names_pool import EMPTY
from xdscp.server.subscription import Subscription

# What a client holds of a subscribed name that does not exist: it was told so.
ABSENT = "\0absent"


@dataclass(slots=True)
class DeltaSubscription(Subscription):
    """What the client holds is the view of ``held`` for ``held_names`` /
    ``held_wildcard``, except for the names in ``overrides``. Between responses only the
    names a request touched are overridden, so an idle stream holds three shared
    references instead of a name -> version map."""

    held_names: frozenset[str] = EMPTY
    held_wildcard: bool = False
    overrides: dict[str, str | None] = field(default_factory=dict)  # None: holds nothing
    pending: set[str] = field(default_factory=set)  # names to check on the next response
    full: bool = True  # compare everything, not only what changed
    resumed: bool = False  # the first request listed initial_resource_versions
    gone: set[str] = field(default_factory=set)  # subscribed names told removed

    # The names a client subscribes to count against the stream's limit (max_names).
    counts_names: ClassVar[bool] = True
    # A first answer may be one the fleet shares (everything, or a pooled subscription).
    shared_first_answer: ClassVar[bool] = True

    def begin(self, req: DeltaDiscoveryRequest) -> None:
        """The stream's first request of this type. A reconnect lists what the client holds,
        which is not sent again; a first request that names nothing is the legacy wildcard."""
        self.overrides.update(req.initial_resource_versions)
        self.resumed = bool(req.initial_resource_versions)
        self.full = True
        if not req.resource_names_subscribe:
            self.wildcard = True

    def names_in(self, req: DeltaDiscoveryRequest) -> tuple[Collection[str], Collection[str]]:
        """The names a request subscribes to and unsubscribes from ("*": the wildcard)."""
        return req.resource_names_subscribe, req.resource_names_unsubscribe

    def tell_unknown(self, name: str) -> bool:
        """Whether a subscribed name with no resource, that the client was never told of, is
        answered by an entry of its own rather than as removed."""
        return False

    def sending(self, name: str) -> None:
        """``name``'s resource is in the next response."""
        self.gone.discard(name)
