"""The xDS gRPC services (ADS and per-type, SotW and Delta) as grpc.aio handlers.

Handlers take and return raw bytes: requests are parsed inside the stream (so garbage
gets a clear INVALID_ARGUMENT), and responses are pre-assembled from cached bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from xdscp.errors import LimitExceeded, PermissionDenied, ProtocolError
from xdscp.grpc_options import ACCEPT_STORMS, KEEPALIVE
from xdscp.logfmt import log_event
from xdscp.metrics import REJECTED_REQUESTS
from xdscp.server.delta import DeltaStream
from xdscp.server.sotw import SotwStream
from xdscp.server.stream import ServerEnv, Stream
from xdscp.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE

log = logging.getLogger("xdscp.server")

SHUTTING_DOWN = "xdscp is shutting down; reconnect"
GRPC_SERVER_OPTIONS = [*KEEPALIVE, *ACCEPT_STORMS]

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
        if env.shutting_down.is_set():
            await _end(context, None, grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            return
        if len(env.tracker) >= env.limits.max_streams:
            REJECTED_REQUESTS.labels("streams").inc()
            log_event(log, logging.WARNING, "xds.limit", limit="streams", peer=context.peer(),
                      max_streams=env.limits.max_streams)
            await _end(context, None, grpc.StatusCode.RESOURCE_EXHAUSTED,
                       f"xdscp is serving its limit of {env.limits.max_streams} streams")
            return
        stream = stream_cls(env, fixed_type, context.peer())
        if not env.policy.open:
            stream.identities = env.policy.identities(context)
        try:
            async for message in stream.serve(context.read):
                await context.write(message)
                del message
            if env.shutting_down.is_set():
                # Every stream ends with a status the client can act on: reconnect elsewhere.
                await _end(context, stream, grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        except ProtocolError as e:
            REJECTED_REQUESTS.labels(e.reason).inc()
            log_event(log, logging.WARNING, "xds.bad_request", node=stream.node_id, stream=stream.id,
                      peer=stream.peer, reason=str(e))
            await _end(context, stream, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except LimitExceeded as e:
            REJECTED_REQUESTS.labels(e.limit).inc()
            log_event(log, logging.WARNING, "xds.limit", node=stream.node_id, stream=stream.id, peer=stream.peer,
                      limit=e.limit, reason=str(e))
            await _end(context, stream, grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except PermissionDenied as e:
            REJECTED_REQUESTS.labels("permission").inc()
            log_event(log, logging.WARNING, "xds.denied", node=stream.node_id, stream=stream.id, peer=stream.peer,
                      identities=sorted(stream.identities), reason=str(e))
            await _end(context, stream, grpc.StatusCode.PERMISSION_DENIED, str(e))
        except (asyncio.CancelledError, aio.AbortError):
            raise
        except aio.InternalError as e:
            # gRPC could not write to the call: the client left (or the server is stopping)
            # as the response went out. Nothing is wrong here, and nobody is left to tell.
            _gone(stream, e)
        except Exception as e:  # a bug must end this stream only, and say where
            if context.cancelled() or env.shutting_down.is_set():
                _gone(stream, e)  # the client or the process is going: the failure is that, not a bug
                return
            log.exception("stream failed", extra={"xdscp_fields": {
                "node": stream.node_id, "stream": stream.id, "peer": stream.peer}})
            await _end(context, stream, grpc.StatusCode.INTERNAL, f"xdscp internal error: {type(e).__name__}")

    # No (de)serializers: bytes in, bytes out.
    return grpc.stream_stream_rpc_method_handler(handle)


async def _end(context: aio.ServicerContext, stream: Stream | None, code: grpc.StatusCode, details: str) -> None:
    """End the call with ``code``. When the status cannot be sent (the client is gone), say so
    at debug level and return: ``abort`` is called once per call, whatever happens."""
    try:
        await context.abort(code, details)
    except aio.AbortError:
        raise  # sent: grpc expects the handler to end with this
    except Exception as e:
        _gone(stream, e)


def _gone(stream: Stream | None, error: Exception) -> None:
    log_event(log, logging.DEBUG, "stream.gone", node=stream.node_id if stream else "",
              stream=stream.id if stream else 0, peer=stream.peer if stream else "",
              reason=f"{type(error).__name__}: {error}".strip())


def add_xds_services(server: aio.Server, env: ServerEnv) -> None:
    handlers = []
    for service, (fixed_type, sotw, delta) in XDS_SERVICES.items():
        handlers.append(grpc.method_handlers_generic_handler(service, {
            sotw: _handler(SotwStream, env, fixed_type),
            delta: _handler(DeltaStream, env, fixed_type),
        }))
    server.add_generic_rpc_handlers(tuple(handlers))
