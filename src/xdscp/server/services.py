"""Registers the xDS gRPC services (ADS and per-type, SotW and Delta) on a grpc.aio server.

Handlers take and return raw bytes: requests are parsed inside the stream (so garbage
gets a clear INVALID_ARGUMENT), and responses are pre-assembled from cached bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from xdscp.errors import ProtocolError
from xdscp.logfmt import log_event
from xdscp.server.delta import DeltaStream
from xdscp.server.sotw import SotwStream
from xdscp.server.stream import ServerEnv, Stream
from xdscp.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE

log = logging.getLogger("xdscp.server")

# service -> (fixed type URL or None for ADS, SotW method, Delta method)
XDS_SERVICES: dict[str, tuple[str | None, str, str]] = {
    "envoy.service.discovery.v3.AggregatedDiscoveryService": (
        None, "StreamAggregatedResources", "DeltaAggregatedResources"),
    "envoy.service.cluster.v3.ClusterDiscoveryService": (CLUSTER, "StreamClusters", "DeltaClusters"),
    "envoy.service.endpoint.v3.EndpointDiscoveryService": (ENDPOINT, "StreamEndpoints", "DeltaEndpoints"),
    "envoy.service.listener.v3.ListenerDiscoveryService": (LISTENER, "StreamListeners", "DeltaListeners"),
    "envoy.service.route.v3.RouteDiscoveryService": (ROUTE, "StreamRoutes", "DeltaRoutes"),
}


def _handler(stream_cls: type[Stream], env: ServerEnv, fixed_type: str | None) -> grpc.RpcMethodHandler:
    # A coroutine using context.read/write, not an async generator: grpc's generator
    # driver keeps the last response referenced while the stream idles, and an Envoy's
    # first response can be the whole snapshot.
    async def handle(_requests: AsyncIterator[bytes], context: aio.ServicerContext) -> None:
        stream = stream_cls(env, fixed_type, context.peer())
        try:
            async for message in stream.serve(context.read):
                await context.write(message)
                del message
        except ProtocolError as e:
            log_event(log, logging.WARNING, "xds.bad_request", node=stream.node_id, stream=stream.id,
                      peer=stream.peer, reason=str(e))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except (asyncio.CancelledError, aio.AbortError):
            raise
        except Exception as e:  # a bug must end this stream only, and say where
            log.exception("stream failed", extra={"xdscp_fields": {
                "node": stream.node_id, "stream": stream.id, "peer": stream.peer}})
            await context.abort(grpc.StatusCode.INTERNAL, f"xdscp internal error: {type(e).__name__}")

    # No (de)serializers: bytes in, bytes out.
    return grpc.stream_stream_rpc_method_handler(handle)


def add_xds_services(server: aio.Server, env: ServerEnv) -> None:
    handlers = []
    for service, (fixed_type, sotw, delta) in XDS_SERVICES.items():
        handlers.append(grpc.method_handlers_generic_handler(service, {
            sotw: _handler(SotwStream, env, fixed_type),
            delta: _handler(DeltaStream, env, fixed_type),
        }))
    server.add_generic_rpc_handlers(tuple(handlers))
