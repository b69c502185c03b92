"""Delta (incremental) streams: subscribe/unsubscribe, per-resource versions, removals."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest

from xdscp.cache import wire
from xdscp.cache.resource import Resource
from xdscp.cache.snapshot import Snapshot
from xdscp.logfmt import log_event
from xdscp.server.stream import Stream, log
from xdscp.server.tracker import TypeStatus

# DeltaDiscoveryResponse field numbers.
_SYSTEM_VERSION, _TYPE_URL, _NONCE, _REMOVED = 1, 4, 5, 6
# In ``known``: the client was told this subscribed name does not exist.
_ABSENT = "\0absent"


@dataclass(slots=True)
class _TypeState:
    status: TypeStatus = field(default_factory=TypeStatus)
    requested: bool = False
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)  # name -> version the client holds
    pending: set[str] = field(default_factory=set)  # names to check on the next response
    full: bool = True  # compare everything, not only what changed
    synced: str | None = None
    nonce: str | None = None


class DeltaStream(Stream):
    """A DeltaDiscoveryRequest/DeltaDiscoveryResponse stream (ADS, or one type's service)."""

    transport = "delta"
    control_plane_field = 7

    request_cls = DeltaDiscoveryRequest
    state_cls = _TypeState
    types: dict[str, _TypeState]

    def on_request(self, req: DeltaDiscoveryRequest) -> None:
        type_url, st = self.state_for(req)
        nonce = req.response_nonce
        if nonce:
            if nonce == st.nonce:
                self.record_ack(st.status, type_url, st.status.version_sent, nonce, self.nack_error(req))
            else:
                # Unlike SotW, a stale nonce never blocks the subscription changes it carries.
                log_event(log, logging.DEBUG, "xds.stale_nonce", node=self.node_id, type=type_url,
                          nonce=nonce, expected=st.nonce, stream=self.id)
        first = not st.requested
        st.requested = True
        if first:
            # Reconnect: what the client already holds is not sent again.
            st.known.update(req.initial_resource_versions)
            st.full = True
            if not req.resource_names_subscribe:
                st.wildcard = True  # legacy wildcard: first request names nothing
        for name in req.resource_names_subscribe:
            if name == "*":
                st.wildcard = True
                st.full = True
                continue
            st.names.add(name)
            st.pending.add(name)
            if not first:
                st.known.pop(name, None)  # subscribing again asks for the resource again
        for name in req.resource_names_unsubscribe:
            if name == "*":
                st.wildcard = False
                st.known = {n: v for n, v in st.known.items() if n in st.names}
                continue
            st.names.discard(name)
            st.pending.discard(name)
            st.known.pop(name, None)

    def respond(self, type_url: str, snapshot: Snapshot) -> bytes | None:
        st = self.types[type_url]
        if not st.requested:
            return None
        ts = snapshot.get(type_url)
        if st.synced == ts.version and not st.pending and not st.full:
            return None
        candidates: set[str]
        if st.full or st.synced is None or st.synced not in (ts.version, ts.prev_version):
            candidates = set(st.known) | st.names | (set(ts.resources) if st.wildcard else set())
        elif st.synced == ts.version:
            candidates = set(st.pending)
        else:
            candidates = set(ts.changed) | st.pending
        send: list[Resource] = []
        removed: list[str] = []
        for name in sorted(candidates):
            subscribed = name in st.names
            if not (subscribed or st.wildcard):
                continue
            res = ts.resources.get(name)
            if res is None and subscribed:
                res = self.env.placeholder(type_url, name)
            if res is None:
                if st.known.get(name) != _ABSENT and (subscribed or name in st.known):
                    removed.append(name)
                    if subscribed:
                        st.known[name] = _ABSENT
                    else:
                        del st.known[name]
                continue
            if st.known.get(name) != res.version:
                send.append(res)
                st.known[name] = res.version
        st.pending.clear()
        st.full = False
        st.synced = ts.version
        if not send and not removed:
            return None
        nonce = self.next_nonce()
        st.nonce = nonce
        self.record_response(st.status, type_url, ts.version, nonce, len(send), len(removed))
        return b"".join((
            wire.string_field(_SYSTEM_VERSION, ts.version),
            b"".join(r.delta_entry for r in send),
            wire.string_field(_TYPE_URL, type_url),
            b"".join(wire.string_field(_REMOVED, n) for n in removed),
            wire.string_field(_NONCE, nonce),
            self._cp,
        ))
