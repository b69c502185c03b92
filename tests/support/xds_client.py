"""A step-by-step xDS client for protocol tests: send one request, read one response.

A real protocol peer (grpc.aio over a real socket to the real server); only the
request sequence is scripted, so each protocol rule can be exercised on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3.base_pb2 import Node
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from google.rpc import status_pb2

from xdscp.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
MESSAGE_OF = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
}


def node(node_id: str = "test-node", cluster: str = "ingress") -> Node:
    return Node(id=node_id, cluster=cluster)


def sotw_request(type_url: str, names: Iterable[str] = (), *, version: str = "", nonce: str = "",
                 with_node: Node | None = None, error: str | None = None) -> DiscoveryRequest:
    req = DiscoveryRequest(type_url=type_url, resource_names=list(names), version_info=version,
                           response_nonce=nonce)
    if with_node is not None:
        req.node.CopyFrom(with_node)
    if error is not None:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def delta_request(type_url: str, subscribe: Iterable[str] = (), unsubscribe: Iterable[str] = (), *,
                  nonce: str = "", initial: Mapping[str, str] | None = None, with_node: Node | None = None,
                  error: str | None = None) -> DeltaDiscoveryRequest:
    req = DeltaDiscoveryRequest(type_url=type_url, resource_names_subscribe=list(subscribe),
                                resource_names_unsubscribe=list(unsubscribe), response_nonce=nonce)
    for name, version in (initial or {}).items():
        req.initial_resource_versions[name] = version
    if with_node is not None:
        req.node.CopyFrom(with_node)
    if error is not None:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def unpack(any_msg: Any) -> Any:
    cls = MESSAGE_OF[any_msg.type_url]
    return cls.FromString(any_msg.value)


class XdsStream:
    """One bidirectional stream; responses are read in the background into a queue."""

    def __init__(self, channel: grpc.aio.Channel, method: str, request_cls: Any, response_cls: Any,
                 raw_requests: bool = False) -> None:
        self._requests: asyncio.Queue[Any] = asyncio.Queue()
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        serializer = (lambda b: b) if raw_requests else request_cls.SerializeToString
        self.call = channel.stream_stream(method, request_serializer=serializer,
                                          response_deserializer=response_cls.FromString)(self._iter())
        self._reader = asyncio.ensure_future(self._read())
        self.error: grpc.aio.AioRpcError | None = None

    async def _iter(self) -> AsyncIterator[Any]:
        while True:
            item = await self._requests.get()
            if item is None:
                return
            yield item

    async def _read(self) -> None:
        try:
            async for resp in self.call:
                await self.responses.put(resp)
        except grpc.aio.AioRpcError as e:
            self.error = e
        await self.responses.put(None)

    def send(self, req: Any) -> None:
        self._requests.put_nowait(req)

    async def recv(self, timeout: float = 5.0) -> Any:
        resp = await asyncio.wait_for(self.responses.get(), timeout)
        if resp is None:
            raise ConnectionError(f"stream ended: {self.error}")
        return resp

    async def expect_silence(self, seconds: float = 0.3) -> None:
        """Assert that no response arrives for ``seconds``."""
        try:
            resp = await asyncio.wait_for(self.responses.get(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected no response, got {resp}")

    async def closed_with(self, timeout: float = 5.0) -> grpc.StatusCode:
        """Wait for the server to end the stream; return its status code."""
        await asyncio.wait_for(self._reader, timeout)
        assert self.error is not None, "stream ended with OK"
        return self.error.code()

    async def close(self) -> None:
        self._requests.put_nowait(None)
        self.call.cancel()
        try:
            await asyncio.wait_for(self._reader, 2)
        except (TimeoutError, asyncio.CancelledError):
            pass


def sotw_stream(channel: grpc.aio.Channel, method: str = ADS + "StreamAggregatedResources",
                raw_requests: bool = False) -> XdsStream:
    return XdsStream(channel, method, DiscoveryRequest, DiscoveryResponse, raw_requests)


def delta_stream(channel: grpc.aio.Channel, method: str = ADS + "DeltaAggregatedResources") -> XdsStream:
    return XdsStream(channel, method, DeltaDiscoveryRequest, DeltaDiscoveryResponse)


async def follow_assignments(channel: grpc.aio.Channel, names: list[str], node_id: str, delta: bool,
                             held: dict[str, Any], summarize: Any, timeout: float = 300) -> None:
    """Subscribe to ``names``' ClusterLoadAssignments (SotW or Delta) and ACK every response,
    keeping ``held[name] = summarize(assignment)`` (names Delta removes are dropped), until
    cancelled: a data plane following the registry, for load and convergence tests."""
    if delta:
        d = delta_stream(channel)
        d.send(delta_request(ENDPOINT, names, with_node=node(node_id)))
        while True:
            resp = await d.recv(timeout=timeout)
            for r in resp.resources:
                cla = unpack(r.resource)
                held[cla.cluster_name] = summarize(cla)
            for name in resp.removed_resources:
                held.pop(name, None)
            d.send(delta_request(ENDPOINT, nonce=resp.nonce))
    s = sotw_stream(channel)
    s.send(sotw_request(ENDPOINT, names, with_node=node(node_id)))
    while True:
        resp = await s.recv(timeout=timeout)
        for r in resp.resources:
            cla = unpack(r)
            held[cla.cluster_name] = summarize(cla)
        s.send(sotw_request(ENDPOINT, names, version=resp.version_info, nonce=resp.nonce))
