"""Proxyless gRPC: real xDS clients (grpcio's, and @grpc/grpc-js-xds when Node is here)
resolve ``xds:///echo`` through xdscp and call three real gRPC servers, following the
registry."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdscp.local.control_plane import XdscpProcess

from grpc_backends import GrpcBackend, ProxylessClient, grpc_bootstrap, install_grpc_js
from plane import write_registry
from waiting import until


@pytest.fixture
def backends() -> Iterator[list[GrpcBackend]]:
    started = [GrpcBackend(name).start() for name in ("alpha", "beta", "gamma")]
    try:
        yield started
    finally:
        for b in started:
            b.stop()


def echo(backends: list[GrpcBackend]) -> list[dict[str, object]]:
    return [{"name": "echo", "instances": [{"host": "127.0.0.1", "port": b.port} for b in backends]}]


@pytest.fixture(params=["grpcio", "grpc-js"])
def client_kind(request: pytest.FixtureRequest) -> Path | None:
    """None for grpcio; grpc-js's node_modules (installed from npm on first use)."""
    if request.param == "grpcio":
        return None
    modules = install_grpc_js()
    if modules is None:
        pytest.skip("node and npm are not installed")
    return modules


def test_proxyless_clients_resolve_xds_targets_and_follow_the_registry(
        tmp_path: Path, backends: list[GrpcBackend], client_kind: Path | None) -> None:
    registry = tmp_path / "registry.yaml"
    write_registry(registry, echo(backends))
    xdscp = XdscpProcess(tmp_path, registry, poll_interval=0.02).start()
    bootstrap = grpc_bootstrap(tmp_path / "grpc-bootstrap.json", xdscp.xds_address)
    client = ProxylessClient("xds:///echo", bootstrap, client_kind)
    try:
        def spread() -> Counter[str] | None:
            counts = client.calls(30)
            return counts if set(counts) == {"alpha", "beta", "gamma"} else None

        until(spread, timeout=20, what="calls spread over the three backends")
        seen = client.calls(30)  # all three connected now
        assert set(seen) == {"alpha", "beta", "gamma"} and max(seen.values()) - min(seen.values()) <= 1, seen
        write_registry(registry, echo(backends[:2]))  # gamma deregistered
        until(lambda: set(client.calls(12)) == {"alpha", "beta"}, what="gamma gets no calls")
        assert set(client.calls(30)) == {"alpha", "beta"}
        write_registry(registry, [{"name": "echo", "instances": [
            {"host": "127.0.0.1", "port": backends[0].port, "healthy": False},
            {"host": "127.0.0.1", "port": backends[1].port}]}])
        until(lambda: client.calls(12) == {"beta": 12}, what="unhealthy alpha gets no calls")
    finally:
        client.stop()
        xdscp.stop()


def test_proxyless_clients_keep_calls_in_their_zone_and_fail_over_by_distance(
        tmp_path: Path, backends: list[GrpcBackend], client_kind: Path | None) -> None:
    """A client in r1/z1: alpha is in its zone, beta in its region, gamma in another region.
    gRPC's priority policy honours the per-locality priorities xdscp serves it."""
    places = {"alpha": ("r1", "z1"), "beta": ("r1", "z2"), "gamma": ("r2", "z3")}
    registry = tmp_path / "registry.yaml"

    def write(unhealthy: frozenset[str] = frozenset()) -> None:
        write_registry(registry, [{"name": "echo", "locality_failover": True, "instances": [
            {"host": "127.0.0.1", "port": b.port, "region": places[b.name][0], "zone": places[b.name][1],
             "healthy": b.name not in unhealthy} for b in backends]}])

    write()
    xdscp = XdscpProcess(tmp_path, registry, poll_interval=0.02).start()
    bootstrap = grpc_bootstrap(tmp_path / "grpc-bootstrap.json", xdscp.xds_address,
                               locality={"region": "r1", "zone": "z1"})
    client = ProxylessClient("xds:///echo", bootstrap, client_kind)
    try:
        for down, serving in ((frozenset(), "alpha"), (frozenset({"alpha"}), "beta"),
                              (frozenset({"alpha", "beta"}), "gamma"), (frozenset({"beta"}), "alpha")):
            write(down)
            until(lambda serving=serving: client.calls(6) == {serving: 6}, timeout=20,
                  what=f"calls to {serving} with {sorted(down)} down")
            assert client.calls(20) == {serving: 20}, (down, serving)
    finally:
        client.stop()
        xdscp.stop()
