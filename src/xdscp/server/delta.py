"""Delta (incremental) streams: subscribe/unsubscribe, per-resource versions, removals."""

from __future__ import annotations

import logging
from collections.abc import Collection

from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest

from xdscp.cache import wire
from xdscp.cache.resource import Resource
from xdscp.cache.snapshot import Snapshot, TypeSnapshot
from xdscp.logfmt import log_event
from xdscp.server.delta_subscription import ABSENT, DeltaSubscription
from xdscp.server.stream import WORKERS_CLUSTER, Stream, log
from xdscp.server.vhds import VhdsSubscription
from xdscp.type_urls import ENDPOINT, ROUTE, VIRTUAL_HOST

# DeltaDiscoveryResponse field numbers.
_SYSTEM_VERSION, _TYPE_URL, _NONCE, _REMOVED = 1, 4, 5, 6
# Types whose stand-in (an empty assignment) answers a name never served, but not one that
# was: a client that held a service's assignment is told it is gone (removed_resources), as
# the xDS protocol has Delta say of a subscribed resource that does not exist. SotW has no
# way to say so and keeps the stand-in.
_REMOVED_WHEN_GONE = frozenset({ENDPOINT})


class DeltaStream(Stream):
    """A DeltaDiscoveryRequest/DeltaDiscoveryResponse stream (ADS, or one type's service)."""

    transport = "delta"
    control_plane_field = 7

    request_cls = DeltaDiscoveryRequest
    state_cls = DeltaSubscription
    types: dict[str, DeltaSubscription]

    def new_state(self, type_url: str) -> DeltaSubscription:
        """Virtual hosts are asked for by Host (VhdsSubscription), except by a workers' relay,
        which mirrors them all as it does every type."""
        relay = self.node is not None and self.node.cluster == WORKERS_CLUSTER
        return VhdsSubscription() if type_url == VIRTUAL_HOST and not relay else DeltaSubscription()

    def on_request(self, req: DeltaDiscoveryRequest, raw: bytes) -> bool:
        type_url, st = self.state_for(req)
        if st.counts_names:
            self.check_names(len(st.names) + len(req.resource_names_subscribe))
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
            st.begin(req)
        names = st.names
        subscribe, unsubscribe = st.names_in(req)
        if subscribe:
            added = frozenset(subscribe)
            if "*" in added:
                st.wildcard = True
                st.full = True
                added = added - {"*"}
            names = names | added
            st.pending |= added
            st.gone -= added
            if not first:
                for name in added:
                    st.overrides[name] = None  # subscribing again asks for the resource again
        if unsubscribe:
            gone = frozenset(unsubscribe)
            if "*" in gone:
                st.wildcard = False
                st.held_wildcard = False  # it may drop what only the wildcard gave it
                gone = gone - {"*"}
            names = names - gone
            st.pending -= gone
            st.gone -= gone
            for name in gone:
                st.overrides[name] = None
        if names is not st.names:
            st.names = self.env.names.canonical(names)
        return first or bool(subscribe) or bool(unsubscribe)

    def _holds(self, st: DeltaSubscription, type_url: str, name: str) -> str | None:
        """The version of ``name`` the client holds, ABSENT, or None for nothing."""
        if name in st.overrides:
            return st.overrides[name]
        if name in st.gone:
            return ABSENT
        if st.held is None or not (st.held_wildcard or name in st.held_names):
            return None
        res = st.held.resources.get(name)
        if res is None and name in st.held_names:
            res = self.env.placeholder(type_url, name)
            return ABSENT if res is None else res.version
        return None if res is None else res.version

    def respond(self, type_url: str, snapshot: Snapshot) -> bytes | None:
        st = self.types[type_url]
        if not st.requested:
            return None
        ts = snapshot.get(type_url)
        held = st.held
        if held is not None and held.version == ts.version and not st.pending and not st.full:
            return None
        if held is None and not st.overrides and st.shared_first_answer:
            shared = self._first_body(st, type_url, ts)
            if shared is not None:
                return self._emit(st, type_url, ts, *shared)
        candidates: Collection[str]
        if st.full or held is None or held.version not in (ts.version, ts.prev_version):
            candidates = st.overrides.keys() | st.names
            if st.wildcard:
                candidates |= ts.resources.keys()
            if held is not None and st.held_wildcard:
                candidates |= held.resources.keys()  # those gone since must be removed
        elif held.version == ts.version:
            candidates = st.pending | st.overrides.keys()
        elif st.pending or st.overrides:
            candidates = ts.changed | st.pending | st.overrides.keys()
        else:
            candidates = ts.changed  # the usual push: what changed, nothing of the client's own
        send: list[Resource] = []
        removed: list[str] = []
        unknown: list[str] = []  # asked for, and told there is no such resource (VHDS)
        for name in sorted(candidates):
            subscribed = name in st.names
            if not (subscribed or st.wildcard):
                continue
            holds = self._holds(st, type_url, name)
            res = ts.resources.get(name)
            if res is None and subscribed:
                res = self._stand_in(st, type_url, name, holds)
            if res is None:
                if subscribed and holds is None and st.tell_unknown(name):
                    unknown.append(name)
                # Removed: what the client holds, and a subscribed name it was never told of.
                elif holds != ABSENT and (subscribed or holds is not None):
                    removed.append(name)
                    if subscribed and type_url in _REMOVED_WHEN_GONE:
                        st.gone.add(name)
            elif holds != res.version:
                send.append(res)
                st.sending(name)
        # A new subscription is always answered, even with nothing: Envoy's (and a
        # relay's) initialization waits for the first response of each type. A
        # reconnect that holds everything already gets nothing.
        if not send and not removed and not unknown and (held is not None or st.resumed):
            if held is None:
                # A reconnect whose initial_resource_versions match: it holds this version.
                st.status.version_acked = ts.version
                log_event(log, logging.INFO, "xds.resume", node=self.node_id, type=type_url,
                          version=ts.version, stream=self.id)
            self._synced(st, ts)
            return None
        if isinstance(st, VhdsSubscription):
            body = st.entries(send, unknown, self._route_names())
            self._forget_oldest_unknown(st)
        else:
            body = [r.delta_entry for r in send]
        return self._emit(st, type_url, ts, b"".join(body), len(body),
                          b"".join(wire.string_field(_REMOVED, n) for n in removed), len(removed))

    def _route_names(self) -> frozenset[str]:
        """The route configurations this stream subscribes to (VHDS namespaces)."""
        return self.types[ROUTE].names if ROUTE in self.types else frozenset()

    def _forget_oldest_unknown(self, st: VhdsSubscription) -> None:
        """Envoy keeps every Host it asked about subscribed, and any client can send any
        Host: past ``max_names`` unknown ones, the oldest are no longer watched for (a
        service created later under such a name is not pushed to this Envoy; it is found
        when the Envoy reconnects). The stream is never refused for it."""
        dropped = st.forget_oldest_unknown(self.env.limits.max_names)
        if dropped:
            st.names = self.env.names.canonical(st.names - dropped)
            log_event(log, logging.WARNING, "vhds.unknown_hosts_dropped", node=self.node_id, dropped=len(dropped),
                      kept=len(st.unknown), stream=self.id)

    def _stand_in(self, st: DeltaSubscription, type_url: str, name: str, holds: str | None) -> Resource | None:
        """What a subscribed name missing from the snapshot is answered with: its stand-in,
        unless the client was served the real resource (or told it was gone)."""
        stand_in = self.env.placeholder(type_url, name)
        if stand_in is None or type_url not in _REMOVED_WHEN_GONE:
            return stand_in
        if holds == ABSENT or (holds is not None and holds != stand_in.version):
            return None
        return stand_in

    def _first_body(self, st: DeltaSubscription, type_url: str, ts: TypeSnapshot) -> tuple[bytes, int] | None:
        """A first answer the fleet shares (everything, or a pooled subscription), if it is one."""
        if st.wildcard and not st.names:
            return ts.delta_body(), len(ts.resources)
        if not st.wildcard and st.names:
            return ts.subset_body(st.names, True, self.env.placeholder)
        return None

    @staticmethod
    def _synced(st: DeltaSubscription, ts: TypeSnapshot) -> None:
        """The client now holds this snapshot's view of its subscription."""
        st.held, st.held_names, st.held_wildcard = ts, st.names, st.wildcard
        if st.overrides:
            st.overrides = {}
        if st.pending:
            st.pending = set()
        st.full = False

    def _emit(self, st: DeltaSubscription, type_url: str, ts: TypeSnapshot, body: bytes, count: int,
              removed: bytes = b"", removed_count: int = 0) -> bytes:
        self._synced(st, ts)
        nonce = self.next_nonce()
        st.nonce = nonce
        self.record_response(st.status, type_url, ts.version, nonce, count, removed_count)
        return b"".join((
            wire.shared_string_field(_SYSTEM_VERSION, ts.version),
            body,
            wire.shared_string_field(_TYPE_URL, type_url),
            removed,
            wire.string_field(_NONCE, nonce),
            self._cp,
        ))
