"""An MCP-over-xDS client that behaves as Istio's does: ``pkg/adsc`` in istio/istio, the client
behind istiod's ``configSources: [{address: xds://...}]`` and Higress' (an istio-1.27 fork).

No Istio can run here (istiod needs Kubernetes and its images), so this follows the rules
of adsc.go as of istio/istio master, August 2026:

* one SotW ADS stream; the first requests are ``core/v1alpha1/MeshConfig`` and every Pilot
  collection under its current group/version/kind (``ConfigInitialRequests``), the node on
  the first one only, each with a nonce of its own (adsc puts the time there);
* a MeshConfig response with resources is taken and not ACKed; every other response is
  ACKed with its version and nonce;
* a collection counts as synced at its first response, and the client once every
  requested collection has had one (``HasSynced``);
* each response replaces its collection whole: what it lacks is deleted;
* a resource's ``metadata.name`` must be ``namespace/name`` (else it is skipped), and an
  update is applied only when ``metadata.version`` changed.

Bodies are decoded with xdscp.istio_api, whose messages tests/test_istio_api_wire.py checks
against istio/api's own files.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest, DiscoveryResponse
from google.protobuf import struct_pb2

from xdscp.istio_api.mcp.v1alpha1 import resource_pb2
from xdscp.istio_api.networking.v1alpha3 import (
    destination_rule_pb2,
    service_entry_pb2,
    virtual_service_pb2,
    workload_entry_pb2,
)

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
MESH_CONFIG = "core/v1alpha1/MeshConfig"
# collections.Pilot in istio/istio master (August 2026), each under its current GVK: what
# Istio 1.30 and later ask for. 1.22 to 1.29 ask the same without TrafficExtension (added in
# 1.30), and so does Higress, on an istio-1.27 fork.
ISTIO_COLLECTIONS = (
    "security.istio.io/v1/AuthorizationPolicy",
    "networking.istio.io/v1/DestinationRule",
    "networking.istio.io/v1alpha3/EnvoyFilter",
    "networking.istio.io/v1/Gateway",
    "security.istio.io/v1/PeerAuthentication",
    "networking.istio.io/v1beta1/ProxyConfig",
    "security.istio.io/v1/RequestAuthentication",
    "networking.istio.io/v1/ServiceEntry",
    "networking.istio.io/v1/Sidecar",
    "telemetry.istio.io/v1/Telemetry",
    "extensions.istio.io/v1alpha1/TrafficExtension",
    "networking.istio.io/v1/VirtualService",
    "extensions.istio.io/v1alpha1/WasmPlugin",
    "networking.istio.io/v1/WorkloadEntry",
    "networking.istio.io/v1/WorkloadGroup",
)
# What Istio 1.21 asks for (checked against its collections.Pilot): the networking kinds as
# v1alpha3, security as v1beta1, telemetry as v1alpha1, and no TrafficExtension.
OLDER_ISTIO_COLLECTIONS = tuple(
    c.replace("networking.istio.io/v1/", "networking.istio.io/v1alpha3/")
     .replace("security.istio.io/v1/", "security.istio.io/v1beta1/")
     .replace("telemetry.istio.io/v1/", "telemetry.istio.io/v1alpha1/")
    for c in ISTIO_COLLECTIONS if "TrafficExtension" not in c)

BODIES: dict[str, Any] = {
    "type.googleapis.com/istio.networking.v1alpha3.ServiceEntry": service_entry_pb2.ServiceEntry,
    "type.googleapis.com/istio.networking.v1alpha3.WorkloadEntry": workload_entry_pb2.WorkloadEntry,
    "type.googleapis.com/istio.networking.v1alpha3.DestinationRule": destination_rule_pb2.DestinationRule,
    "type.googleapis.com/istio.networking.v1alpha3.VirtualService": virtual_service_pb2.VirtualService,
}


@dataclass
class Config:
    """One resource as Istio's config store keeps it."""

    namespace: str
    name: str
    version: str
    annotations: dict[str, str]
    spec: Any


class IstioMcpClient:
    def __init__(self, target: str, collections: tuple[str, ...] = ISTIO_COLLECTIONS) -> None:
        self.target = target
        self.collections = collections
        self.store: dict[str, dict[str, Config]] = {c: {} for c in collections}
        self.synced_at: dict[str, float] = {}
        self.applied: Counter[tuple[str, str]] = Counter()  # (collection, ns/name) -> updates applied
        self.responses: Counter[str] = Counter()
        self.invalid: list[str] = []  # names adsc would refuse
        self.mesh_config_responses = 0
        self._requests: asyncio.Queue[DiscoveryRequest] = asyncio.Queue()
        self._channel: grpc.aio.Channel | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def synced(self) -> bool:
        return all(c in self.synced_at for c in self.collections)

    def versions(self, collection: str) -> dict[str, str]:
        return {n: c.version for n, c in self.store[collection].items()}

    async def start(self) -> IstioMcpClient:
        self._channel = grpc.aio.insecure_channel(self.target)

        async def requests():  # type: ignore[no-untyped-def]
            while True:
                yield await self._requests.get()

        call = self._channel.stream_stream(ADS, DiscoveryRequest.SerializeToString, DiscoveryResponse.FromString)(
            requests())
        node = {"id": "sidecar~10.0.0.9~istiod-0.istio-system~istio-system.svc.cluster.local",
                "metadata": struct_pb2.Struct(fields={"ISTIO_VERSION": struct_pb2.Value(string_value="1.28.0"),
                                                      "GENERATOR": struct_pb2.Value(string_value="api")})}
        for i, type_url in enumerate((MESH_CONFIG, *self.collections)):
            req = DiscoveryRequest(type_url=type_url, response_nonce=time.strftime("%Y-%m-%d %H:%M:%S") + f".{i}")
            if i == 0:
                req.node.CopyFrom(DiscoveryRequest(node=node).node)  # sendNodeMeta: the first request only
            self._requests.put_nowait(req)
        self._reader = asyncio.create_task(self._read(call))
        return self

    async def _read(self, call: Any) -> None:
        while True:
            resp = await call.read()
            if resp is grpc.aio.EOF:
                return
            self._handle(resp)
            self._changed.set()

    def _handle(self, resp: DiscoveryResponse) -> None:
        self.responses[resp.type_url] += 1
        if resp.type_url == MESH_CONFIG:
            self.mesh_config_responses += 1
            if resp.resources:
                return  # adsc takes the MeshConfig and sends no ACK
        elif resp.type_url in self.store:
            self._replace(resp.type_url, resp)
            self.synced_at.setdefault(resp.type_url, time.monotonic())
        self._requests.put_nowait(DiscoveryRequest(type_url=resp.type_url, version_info=resp.version_info,
                                                   response_nonce=resp.nonce))

    def _replace(self, collection: str, resp: DiscoveryResponse) -> None:
        existing = self.store[collection]
        received: dict[str, Config] = {}
        for any_msg in resp.resources:
            res = resource_pb2.Resource()
            any_msg.Unpack(res)
            parts = res.metadata.name.split("/")
            if len(parts) != 2:
                self.invalid.append(res.metadata.name)
                continue
            spec = BODIES[res.body.type_url].FromString(res.body.value)
            cfg = Config(parts[0], parts[1], res.metadata.version, dict(res.metadata.annotations), spec)
            key = f"{cfg.namespace}/{cfg.name}"
            received[key] = cfg
            old = existing.get(key)
            if old is None or old.version != cfg.version or not cfg.version:
                existing[key] = cfg
                self.applied[(collection, key)] += 1
        for key in [k for k in existing if k not in received]:
            del existing[key]

    async def wait(self, check: Any, timeout: float = 15.0, what: str = "condition") -> None:
        """Until ``check()`` holds after a response, within ``timeout`` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():
            if self._reader is not None and self._reader.done():
                self._reader.result()  # the stream broke: say how
                raise ConnectionError("the stream ended")
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._channel is not None:
            await self._channel.close()
