"""Fuzzing (hypothesis, bounded): garbage and half-valid requests against a real xdscp process.

The xDS port gets random bytes and random DiscoveryRequests (type URLs, names, nonces,
NACKs, nodes) on SotW and Delta streams; the registration APIs get random methods,
parameters and JSON bodies; the Nacos gRPC face gets random payload types, bodies of
any JSON type and nesting, and bytes that are no payload, on a set-up connection.
Whatever comes in, a stream ends with a deliberate status or is answered, no request
gets a 5xx or INTERNAL, a well-formed client is still served after every example, and
the process log shows no unhandled exception. Inputs that once broke something are kept
below as explicit examples.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest, DiscoveryRequest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdscp.local.control_plane import XdscpProcess
from xdscp.nacos_protocol import GRPC_PORT_OFFSET, Payload, decode
from xdscp.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SERVICE_ENTRY

from nacos_grpc_client import Client

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
# Statuses a stream may end with on purpose (OK: the fuzzer half-closed before an answer
# was due); INTERNAL (a bug) and UNKNOWN are not among them.
DELIBERATE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
              grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.PERMISSION_DENIED}
# Reproducible in CI (the same 150 examples per test each run); XDSCP_FUZZ=1000 explores
# that many fresh random examples instead.
_EXPLORE = int(os.environ.get("XDSCP_FUZZ", "0"))
FUZZ = settings(max_examples=_EXPLORE or 150, derandomize=not _EXPLORE, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XdscpProcess]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    proc = XdscpProcess(workdir, sources=[{"kind": "embedded", "database": None}],
                        xds_settings={"limits": {"max_requests_per_second": 10000}}).start()
    try:
        yield proc
    finally:
        proc.stop()
        assert not unhandled(proc.log_text()), unhandled(proc.log_text())[:3]


def unhandled(log: str) -> list[str]:
    """Log lines carrying a traceback, but grpc's own report of a status it could not send
    because the fuzzer had already cancelled the call (nothing of xdscp's failed there)."""
    return [line[:2000] for line in log.splitlines() if "Traceback" in line
            and not ("logger=grpc._cython.cygrpc" in line and "SendStatusFromServerOperation" in line)]


@pytest.fixture(scope="module")
def channel(server: XdscpProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.xds_address) as ch:
        yield ch


def exchange(channel: grpc.Channel, method: str, payloads: list[bytes],
             timeout: float = 1.5) -> grpc.StatusCode | None:
    """Send ``payloads`` on one stream; None if a response came, else the stream's status
    (DEADLINE_EXCEEDED when ``timeout`` passed with no response, as for a request that asks for nothing)."""
    call = channel.stream_stream(ADS + method)(iter(payloads), timeout=timeout)
    try:
        for _ in call:
            call.cancel()
            return None
    except grpc.RpcError as e:
        return e.code() if e.code() != grpc.StatusCode.CANCELLED else None
    return grpc.StatusCode.OK


def still_serves(channel: grpc.Channel) -> bool:
    req = DiscoveryRequest(type_url=CLUSTER)
    req.node.id = "health-check"
    # A generous deadline: a CDS request is always answered, however busy the machine is.
    return exchange(channel, "StreamAggregatedResources", [req.SerializeToString()], timeout=30) is None


type_urls = st.one_of(st.sampled_from([CLUSTER, ENDPOINT, LISTENER, ROUTE, SERVICE_ENTRY, ""]), st.text(max_size=60))
names = st.lists(st.one_of(st.text(max_size=40), st.sampled_from(["*", "echo", ""])), max_size=30)


@st.composite
def sotw_requests(draw: Any) -> bytes:
    req = DiscoveryRequest(type_url=draw(type_urls), resource_names=draw(names),
                           version_info=draw(st.text(max_size=20)), response_nonce=draw(st.text(max_size=20)))
    if draw(st.booleans()):
        req.node.id = draw(st.text(max_size=30))
        req.node.cluster = draw(st.text(max_size=30))
    if draw(st.booleans()):
        req.error_detail.code = draw(st.integers(0, 20))
        req.error_detail.message = draw(st.text(max_size=50))
    return bytes(req.SerializeToString())


@st.composite
def delta_requests(draw: Any) -> bytes:
    req = DeltaDiscoveryRequest(type_url=draw(type_urls), resource_names_subscribe=draw(names),
                                resource_names_unsubscribe=draw(names), response_nonce=draw(st.text(max_size=20)))
    for name in draw(st.lists(st.text(max_size=20), max_size=5)):
        req.initial_resource_versions[name] = draw(st.text(max_size=10))
    if draw(st.booleans()):
        req.node.id = draw(st.text(max_size=30))
    return bytes(req.SerializeToString())


@FUZZ
@given(payloads=st.lists(st.one_of(st.binary(max_size=300), sotw_requests()), min_size=1, max_size=4))
def test_sotw_streams_survive_anything(channel: grpc.Channel, payloads: list[bytes]) -> None:
    status = exchange(channel, "StreamAggregatedResources", payloads)
    assert status is None or status in DELIBERATE, status
    assert still_serves(channel)


@FUZZ
@given(payloads=st.lists(st.one_of(st.binary(max_size=300), delta_requests()), min_size=1, max_size=4))
def test_delta_streams_survive_anything(channel: grpc.Channel, payloads: list[bytes]) -> None:
    status = exchange(channel, "DeltaAggregatedResources", payloads)
    assert status is None or status in DELIBERATE, status
    assert still_serves(channel)


PARAMS = ["serviceName", "ip", "port", "weight", "healthy", "enabled", "enable", "ephemeral", "clusterName",
          "groupName", "namespaceId", "metadata", "beat", "pageNo", "pageSize", "healthyOnly", "clusters",
          "heartBeat", "accessToken"]
values = st.one_of(st.text(max_size=30), st.sampled_from(["echo", "127.0.0.1", "8080", "-1", "1e309", "nan",
                                                          "true", "{}", "{\"a\": 1}", "[1]", "DEFAULT_GROUP@@x",
                                                          "0", "65536", "::1", "public", ""]))
NACOS_PATHS = [f"{p}/{s}" for p in ("/nacos/v1/ns", "/nacos/v2/ns", "/nacos/v3/client/ns")
               for s in ("instance", "instance/list", "instance/beat", "service/list")]
NACOS_PATHS.append("/nacos/v3/admin/ns/service/list")


def http(server: XdscpProcess, method: str, path: str, params: dict[str, str] | None = None,
         body: bytes | None = None) -> int:
    url = f"http://{server.admin_address}{urllib.parse.quote(path)}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, method=method, data=body,
                                 headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]), path=st.sampled_from(NACOS_PATHS),
       params=st.dictionaries(st.one_of(st.sampled_from(PARAMS), st.text(max_size=8)), values, max_size=8))
def test_the_nacos_api_answers_every_request_without_a_server_error(
        server: XdscpProcess, method: str, path: str, params: dict[str, str]) -> None:
    assert http(server, method, path, params) < 500


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(),
                                     st.text(max_size=20)),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                           max_leaves=12)
instance_like = st.fixed_dictionaries({}, optional={
    "host": st.one_of(st.sampled_from(["127.0.0.1", "::1", "not-an-ip"]), st.text(max_size=20)),
    "port": st.one_of(st.integers(-5, 70000), st.text(max_size=5)),
    "weight": st.one_of(st.floats(), st.integers(-5, 20000)), "healthy": json_values,
    "metadata": json_values, "zone": json_values})


@FUZZ
@given(service=st.one_of(st.sampled_from(["echo", "a.b-c_d"]), st.text(min_size=1, max_size=20)),
       body=st.one_of(instance_like, json_values), method=st.sampled_from(["POST", "PUT", "PATCH"]))
def test_the_native_api_answers_every_body_without_a_server_error(
        server: XdscpProcess, service: str, body: Any, method: str) -> None:
    path = f"/v1/services/{service}" + ("/instances" if method == "POST" else "")
    assert http(server, method, path, body=json.dumps(body, allow_nan=True).encode()) < 500


# -- the Nacos gRPC face -------------------------------------------------------------------
NACOS_TYPES = ["InstanceRequest", "BatchInstanceRequest", "PersistentInstanceRequest", "SubscribeServiceRequest",
               "ServiceQueryRequest", "ServiceListRequest", "HealthCheckRequest", "ServerCheckRequest"]
NACOS_FIELDS = ["requestId", "namespace", "serviceName", "groupName", "type", "instance", "instances",
                "subscribe", "clusters", "cluster", "healthyOnly", "pageNo", "pageSize", "headers"]
nacos_instances = st.fixed_dictionaries({}, optional={
    "ip": st.one_of(st.sampled_from(["127.0.0.1", "10.0.0.9", "::1", "x"]), json_values),
    "port": st.one_of(st.integers(-5, 70000), json_values), "weight": json_values, "healthy": json_values,
    "enabled": json_values, "clusterName": json_values, "metadata": json_values})
nacos_bodies = st.one_of(
    st.dictionaries(st.sampled_from(NACOS_FIELDS), st.one_of(
        json_values, nacos_instances, st.lists(nacos_instances, max_size=3),
        st.sampled_from(["registerInstance", "deregisterInstance", "batchRegisterInstance", "fuzz", "true",
                         "false", "DEFAULT_GROUP", "public"])), max_size=9),
    json_values)
WITNESS = "fuzz-witness-service"


@st.composite
def nacos_payloads(draw: Any) -> bytes:
    """A Payload: a known type (or any text), a body of JSON (nested, odd types), headers;
    or bytes that are not one at all."""
    if draw(st.integers(0, 9)) == 0:
        return bytes(draw(st.binary(max_size=200)))
    body = draw(nacos_bodies)
    kind = draw(st.one_of(st.sampled_from(NACOS_TYPES), st.text(max_size=30)))
    raw = json.dumps(body, allow_nan=True).encode()
    if draw(st.integers(0, 19)) == 0:
        raw = b"[" * 5000 + raw + b"]" * 5000  # nested past the JSON parser
    msg = Payload()
    msg.metadata.type = kind
    for k, v in draw(st.dictionaries(st.sampled_from(["accessToken", "app", "x"]), st.text(max_size=10),
                                     max_size=2)).items():
        msg.metadata.headers[k] = v
    msg.body.value = raw
    return bytes(msg.SerializeToString())


@pytest.fixture(scope="module")
def nacos_witness(server: XdscpProcess) -> Iterator[str]:
    """A persistent instance registered through the HTTP face: no fuzzed request may touch it."""
    http(server, "POST", "/nacos/v1/ns/instance", {"serviceName": WITNESS, "ip": "10.255.0.1", "port": "7",
                                                  "ephemeral": "false"})
    yield f"127.0.0.1:{server.admin_port + GRPC_PORT_OFFSET}"


def witness_hosts(server: XdscpProcess) -> list[Any]:
    url = f"http://{server.admin_address}/nacos/v1/ns/instance/list?serviceName={WITNESS}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return [(h["ip"], h["port"], h["enabled"], h["weight"]) for h in json.loads(r.read())["hosts"]]


@FUZZ
@given(payloads=st.lists(nacos_payloads(), min_size=1, max_size=6))
def test_the_nacos_grpc_face_answers_everything_with_a_nacos_answer(
        server: XdscpProcess, nacos_witness: str, payloads: list[bytes]) -> None:
    """On a set-up connection: every request is answered with a Nacos payload (an error code
    for bad ones, never a gRPC error), the server stays up, and the witness instance, which
    another client registered, never changes."""
    async def run() -> None:
        _, _, port = nacos_witness.rpartition(":")
        client = Client(int(port))
        try:
            await client.setup()
            for raw in payloads:
                reply = await client.unary(raw, timeout=30)
                kind, body, _ = decode(reply)
                assert kind.endswith("Response") and isinstance(body.get("errorCode"), int), (kind, body)
            assert (await client.call("HealthCheckRequest", {"requestId": "h"}))[1]["errorCode"] == 0
        finally:
            await client.close()

    asyncio.run(run())
    assert witness_hosts(server) == [("10.255.0.1", 7, True, 1.0)]
