"""TLS, mTLS and node authorization on the xDS port, with real certificates (openssl) and a
real gRPC client; certificate rotation; a real Envoy over mTLS."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from xdscp.config import AuthorizationConfig, XdsTlsConfig
from xdscp.errors import ConfigError
from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.type_urls import CLUSTER

from plane import Plane, running_plane, service, start_plane, write_registry
from tls_certs import Pem, make_ca, make_cert
from waiting import until
from xds_client import node, sotw_request, sotw_stream

SERVER_SAN = "DNS:xdscp.local,IP:127.0.0.1"


class Certs:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = make_ca(folder, "ca")
        self.server = make_cert(self.ca, folder, "server", SERVER_SAN, server=True)
        self.edge = make_cert(self.ca, folder, "edge-1", "URI:spiffe://xdscp.test/edge-1", server=False)
        rogue_ca = make_ca(folder / "rogue", "rogue-ca")
        self.rogue = make_cert(rogue_ca, folder / "rogue", "edge-1", "URI:spiffe://xdscp.test/edge-1", server=False)

    def tls(self, mtls: bool = True) -> XdsTlsConfig:
        return XdsTlsConfig(cert_file=self.server.cert, key_file=self.server.key,
                            client_ca_file=self.ca.cert if mtls else None)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


def channel_to(plane: Plane, certs: Certs, client: Pem | None) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=certs.ca.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None)
    return grpc.aio.secure_channel(plane.target, creds, options=[("grpc.ssl_target_name_override", "xdscp.local")])


async def first_cds(channel: grpc.aio.Channel, node_id: str, group: str = "ingress") -> Any:
    s = sotw_stream(channel)
    s.send(sotw_request(CLUSTER, with_node=node(node_id, group)))
    try:
        return await s.recv()
    finally:
        await s.close()


@pytest.fixture
async def mtls_plane(tmp_path: Path, certs: Certs) -> AsyncIterator[Plane]:
    async with running_plane(tmp_path, [service("echo", 9001)], xds={"tls": certs.tls()}, authorization=
                              AuthorizationConfig(rules=[{"identity": "spiffe://xdscp.test/edge-*",
                                                          "nodes": ["edge-*"], "groups": ["ingress"]}])) as plane:
        yield plane


async def test_mtls_admits_the_ca_s_clients_only(mtls_plane: Plane, certs: Certs) -> None:
    async with channel_to(mtls_plane, certs, certs.edge) as ch:
        resp = await first_cds(ch, "edge-1")
        assert resp.resources
    for client in (certs.rogue, None):  # another CA's certificate; none at all
        async with channel_to(mtls_plane, certs, client) as ch:
            with pytest.raises(ConnectionError) as info:
                await first_cds(ch, "edge-1")
            assert "UNAVAILABLE" in str(info.value)


async def test_a_node_its_identity_may_not_claim_is_refused(mtls_plane: Plane, certs: Certs) -> None:
    async with channel_to(mtls_plane, certs, certs.edge) as ch:
        for node_id, group in (("core-1", "ingress"), ("edge-1", "canary")):
            s = sotw_stream(ch)
            s.send(sotw_request(CLUSTER, with_node=node(node_id, group)))
            assert await s.closed_with() == grpc.StatusCode.PERMISSION_DENIED
            assert s.error is not None and "spiffe://xdscp.test/edge-1 may not claim" in (s.error.details() or "")
    _, nodes = await mtls_plane.admin_json("/debug/nodes")
    assert nodes["nodes"] == []  # nothing was served to them


async def test_bearer_tokens_name_identities(tmp_path: Path) -> None:
    token = "t0k3n-for-the-ci-fleet"
    async with running_plane(tmp_path, [service("echo", 9001)], authorization=AuthorizationConfig(
        tokens={"ci": token}, rules=[{"identity": "token:ci", "nodes": ["ci-*"]}])) as plane:
        async with grpc.aio.insecure_channel(plane.target) as ch:
            for bearer, expected in ((token, None), ("wrong-token-wrong-token", grpc.StatusCode.PERMISSION_DENIED),
                                     (None, grpc.StatusCode.PERMISSION_DENIED)):
                metadata = (("authorization", f"Bearer {bearer}"),) if bearer else ()
                call = ch.stream_stream("/envoy.service.discovery.v3.AggregatedDiscoveryService/"
                                        "StreamAggregatedResources")
                req = sotw_request(CLUSTER, with_node=node("ci-7"))

                async def one(r: Any = req) -> Any:
                    yield r.SerializeToString()

                stream = call(one(), metadata=metadata)
                if expected is None:
                    assert await stream.read() is not grpc.aio.EOF
                    stream.cancel()
                else:
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await stream.read()
                    assert info.value.code() == expected


def _served_serial(plane: Plane, certs: Certs) -> int:
    ctx = ssl.create_default_context(cafile=str(certs.ca.cert))
    ctx.load_cert_chain(certs.edge.cert, certs.edge.key)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", plane.cp.xds_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="xdscp.local") as tls:
            peer = tls.getpeercert()
    assert peer is not None
    return int(str(peer["serialNumber"]), 16)


async def test_a_rotated_certificate_is_served_to_new_connections_without_dropping_streams(
        tmp_path: Path, certs: Certs) -> None:
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "server.pem", live / "server.key"
    shutil.copy(certs.server.cert, cert)
    shutil.copy(certs.server.key, key)
    async with running_plane(tmp_path, [service("echo", 9001)], xds={"tls": XdsTlsConfig(
        cert_file=cert, key_file=key, client_ca_file=certs.ca.cert)}) as plane:
        before = await _to_thread(_served_serial, plane, certs)
        async with channel_to(plane, certs, certs.edge) as ch:
            s = sotw_stream(ch)
            s.send(sotw_request(CLUSTER, with_node=node("edge-1")))
            first = await s.recv()
            s.send(sotw_request(CLUSTER, version=first.version_info, nonce=first.nonce))
            fresh = make_cert(certs.ca, tmp_path, "server-2", SERVER_SAN, server=True)
            shutil.copy(fresh.key, key)
            shutil.copy(fresh.cert, cert)
            after = await _to_thread(_served_serial, plane, certs)
            assert after != before  # new handshakes get the new certificate
            plane.write([service("echo", 9001), service("api", 9101)])
            pushed = await s.recv()  # and the stream opened before the rotation still gets pushes
            assert pushed.version_info != first.version_info
            await s.close()


async def _to_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_unusable_tls_files_stop_the_start_with_a_clear_error(tmp_path: Path, certs: Certs) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("nonsense")
    with pytest.raises(ConfigError, match="xDS TLS files"):
        await start_plane(tmp_path, [service("echo", 9001)], xds={"tls": XdsTlsConfig(
            cert_file=certs.server.cert, key_file=bad)})


def test_a_real_envoy_over_mtls_stays_connected_through_a_rotation(tmp_path: Path, certs: Certs) -> None:
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "server.pem", live / "server.key"
    shutil.copy(certs.server.cert, cert)
    shutil.copy(certs.server.key, key)
    registry = tmp_path / "registry.yaml"
    write_registry(registry, [service("echo", 9001)])
    xdscp = XdscpProcess(tmp_path, registry, xds_settings={"tls": {
        "cert_file": str(cert), "key_file": str(key), "client_ca_file": str(certs.ca.cert)}}).start()
    doc = _mtls_bootstrap(xdscp.xds_address, certs)
    envoy = EnvoyProcess(doc, xdscp.xds_address, tmp_path).start()
    try:
        until(lambda: envoy.cluster_hosts("echo"), what="clusters over mTLS")
        assert envoy.stats("control_plane.connected_state")["control_plane.connected_state"] == 1
        fresh = make_cert(certs.ca, tmp_path, "server-2", SERVER_SAN, server=True)
        shutil.copy(fresh.key, key)
        shutil.copy(fresh.cert, cert)
        write_registry(registry, [service("echo", 9001), service("api", 9101)])
        until(lambda: envoy.cluster_hosts("api"), what="a change after the rotation")
        assert envoy.stats("control_plane.connected_state")["control_plane.connected_state"] == 1
    finally:
        envoy.stop()
        xdscp.stop()


def _mtls_bootstrap(xds_address: str, certs: Certs) -> dict[str, Any]:
    import yaml

    from xdscp.local.envoy_bootstrap import render_bootstrap

    doc = render_bootstrap(REPO_ENVOY_DIR / "bootstrap-mtls.yaml", xds_address)
    tls = yaml.safe_load(yaml.safe_dump(doc))
    xds = next(c for c in tls["static_resources"]["clusters"] if c["name"] == "xdscp")
    common = xds["transport_socket"]["typed_config"]["common_tls_context"]
    common["tls_certificates"][0]["certificate_chain"]["filename"] = str(certs.edge.cert)
    common["tls_certificates"][0]["private_key"]["filename"] = str(certs.edge.key)
    common["validation_context"]["trusted_ca"]["filename"] = str(certs.ca.cert)
    return dict(tls)


def test_short_tokens_are_refused() -> None:
    from pydantic import ValidationError

    from xdscp.config import Config

    with pytest.raises(ValidationError, match="shorter than 16"):
        Config(authorization={"tokens": {"ci": "short"}})


async def test_worker_processes_serve_the_port_with_the_same_tls_and_policy(tmp_path: Path, certs: Certs) -> None:
    registry = tmp_path / "registry.yaml"
    write_registry(registry, [service("echo", 9001)])
    xdscp = XdscpProcess(tmp_path, registry, xds_settings={"workers": 2, "tls": {
        "cert_file": str(certs.server.cert), "key_file": str(certs.server.key),
        "client_ca_file": str(certs.ca.cert)}}, extra={"authorization": {"rules": [
            {"identity": "spiffe://xdscp.test/edge-*", "nodes": ["edge-*"]}]}}).start()
    try:
        creds = grpc.ssl_channel_credentials(certs.ca.cert.read_bytes(), certs.edge.key.read_bytes(),
                                             certs.edge.cert.read_bytes())
        channels = [grpc.aio.secure_channel(xdscp.xds_address, creds, options=[
            ("grpc.ssl_target_name_override", "xdscp.local"), ("grpc.use_local_subchannel_pool", 1)])
            for _ in range(12)]  # separate connections, spread over both processes (SO_REUSEPORT)
        streams, versions, refused = [], set(), 0
        for i, ch in enumerate(channels):
            s = sotw_stream(ch)
            s.send(sotw_request(CLUSTER, with_node=node(f"edge-{i}")))
            versions.add((await s.recv()).version_info)
            streams.append(s)
            bad = sotw_stream(ch)
            bad.send(sotw_request(CLUSTER, with_node=node(f"core-{i}")))
            refused += await bad.closed_with() == grpc.StatusCode.PERMISSION_DENIED
        assert len(versions) == 1 and refused == 12
        on_owner = [n for n in xdscp.admin("/debug/nodes")["nodes"] if n["node_id"].startswith("edge-")]
        assert 0 < len(on_owner) < 12  # the follower took some, under the same TLS and policy
        assert xdscp.admin("/readyz")["workers"] == {"followers": 1, "following": 1}  # its relay got in
        for s in streams:
            await s.close()
        for ch in channels:
            await ch.close()
        async with grpc.aio.insecure_channel(xdscp.xds_address) as plain:  # no TLS on any process
            with pytest.raises(ConnectionError):
                await first_cds(plain, "edge-1")
    finally:
        xdscp.stop()
