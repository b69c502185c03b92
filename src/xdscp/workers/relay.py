"""Follow another xdscp's cache over Delta ADS, so a worker serves what the owner serves.

The relay is an ordinary xDS client of the owning process: a wildcard Delta stream for
every served type. Each resource arrives as the bytes the owner serialized, and is
rebuilt with ``Resource.from_payload``; versions are content hashes, so the worker's
versions equal the owner's, and an Envoy moving between processes resumes cleanly.
On reconnect it sends ``initial_resource_versions``, so only what changed is resent.
A relay that names a locality is that locality's node: the owner answers it with the
locality's ClusterLoadAssignments (see RelayedLocalities).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

import grpc
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest, DeltaDiscoveryResponse

from xdscp.cache.cache import SnapshotCache
from xdscp.cache.resource import Resource
from xdscp.cache.snapshot import Snapshot, TypeSnapshot
from xdscp.logfmt import log_event
from xdscp.model.locality import Locality
from xdscp.server.stream import WORKERS_CLUSTER
from xdscp.type_urls import ENDPOINT, RELAYED_TYPES, short

log = logging.getLogger(__name__)

_DELTA_ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
_MAX_MESSAGE = 256 * 1024 * 1024  # a whole snapshot of one type arrives in one message


Deliver = Callable[[Mapping[str, TypeSnapshot]], None]


def into_cache(cache: SnapshotCache) -> Deliver:
    """Deliver every type as the cache's plain snapshot."""
    return lambda state: cache.set_all(Snapshot(MappingProxyType(dict(state)), changed_at=time.monotonic()))


def into_locality(cache: SnapshotCache, locality: Locality) -> Deliver:
    """Deliver the locality's assignments into the cache's view of it."""
    return lambda state: cache.set_local(locality, state[ENDPOINT])


class CacheRelay:
    """Keeps a cache equal to the upstream xdscp's: ``deliver`` gets every type's state
    each time one changes, once all have arrived."""

    def __init__(self, upstream: str, deliver: Deliver, types: tuple[str, ...] = RELAYED_TYPES,
                 token: str | None = None, locality: Locality | None = None) -> None:
        """``token``: the owner's internal bearer token, when it enforces a node policy;
        ``locality``: the node locality to ask as."""
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.upstream = upstream
        self.deliver = deliver
        self.types = types
        self.locality = locality
        self.node_id = f"xdscp-worker-{os.getpid()}" + (f"-{locality}" if locality is not None else "")
        self._state: dict[str, TypeSnapshot] = {}
        self.applied = 0  # responses applied, for tests and logs

    async def run(self, retry_delay: float = 0.5) -> None:
        """Follow forever; reconnect after the owner restarts or the stream breaks."""
        while True:
            try:
                await self._follow()
            except grpc.aio.AioRpcError as e:
                log_event(log, logging.WARNING, "relay.disconnected", upstream=self.upstream,
                          code=e.code().name, details=e.details())
            await asyncio.sleep(retry_delay)

    async def _follow(self) -> None:
        outbox: asyncio.Queue[DeltaDiscoveryRequest] = asyncio.Queue()
        node: dict[str, object] = {"id": self.node_id, "cluster": WORKERS_CLUSTER}
        if self.locality is not None:
            node["locality"] = {"region": self.locality.region, "zone": self.locality.zone}
        for i, type_url in enumerate(self.types):
            held = self._state.get(type_url)
            outbox.put_nowait(DeltaDiscoveryRequest(
                type_url=type_url,
                node=node if i == 0 else None,
                initial_resource_versions={n: r.version for n, r in held.resources.items()} if held else None,
            ))

        async def requests():  # type: ignore[no-untyped-def]
            while True:
                yield await outbox.get()

        async with grpc.aio.insecure_channel(self.upstream, options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE)]) as channel:
            call = channel.stream_stream(_DELTA_ADS, DeltaDiscoveryRequest.SerializeToString,
                                         DeltaDiscoveryResponse.FromString)(requests(), metadata=self.metadata)
            log_event(log, logging.INFO, "relay.connected", upstream=self.upstream, node=self.node_id,
                      locality=str(self.locality) if self.locality is not None else None)
            async for resp in call:
                self.apply(resp)
                outbox.put_nowait(DeltaDiscoveryRequest(type_url=resp.type_url, response_nonce=resp.nonce))

    def apply(self, resp: DeltaDiscoveryResponse) -> None:
        """Fold one response into the local state; publish once every type has arrived."""
        type_url = resp.type_url
        current = self._state.get(type_url) or TypeSnapshot.empty(type_url)
        upserts = {r.name: Resource.from_payload(type_url, r.name, r.resource.value, any_type_url=r.resource.type_url)
                   for r in resp.resources}
        ts = current.evolve(upserts, resp.removed_resources)
        if ts.version != resp.system_version_info:
            # Content-hashed on both sides: a mismatch means the two disagree on content.
            log_event(log, logging.ERROR, "relay.version_mismatch", type=short(type_url),
                      version=ts.version, upstream_version=resp.system_version_info, nonce=resp.nonce)
        self._state[type_url] = ts
        self.applied += 1
        if all(t in self._state for t in self.types):
            self.deliver(self._state)
            log_event(log, logging.DEBUG, "relay.applied", type=short(type_url), version=ts.version,
                      resources=len(resp.resources), removed=len(resp.removed_resources), nonce=resp.nonce)
