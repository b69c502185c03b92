"""Real gRPC servers answering with their name, and a proxyless client process calling them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from xdscp.local.ports import free_port
from xdscp.local.processes import terminate

PROBE = Path(__file__).with_name("grpc_xds_probe.py")
PROBE_JS = Path(__file__).with_name("grpc_xds_probe.js")
# Installed from the npm registry on first use, pinned, outside the repo.
GRPC_JS_PACKAGES = ("@grpc/grpc-js@1.14.7", "@grpc/grpc-js-xds@1.14.1")
GRPC_JS_DIR = Path.home() / ".cache" / "xdscp" / "grpc-js-xds"


def install_grpc_js() -> Path | None:
    """node_modules holding grpc-js and grpc-js-xds, or None without node/npm."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    modules = GRPC_JS_DIR / "node_modules"
    stamp = GRPC_JS_DIR / ("installed-" + "-".join(p.replace("/", "_") for p in GRPC_JS_PACKAGES))
    if not stamp.exists():
        GRPC_JS_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(GRPC_JS_DIR),
                        *GRPC_JS_PACKAGES], check=True, timeout=600)
        stamp.touch()
    return modules


class GrpcBackend:
    """One instance of the test service: ``/xdscp.test.Echo/Who`` answers its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self._server: grpc.Server | None = None

    def start(self) -> GrpcBackend:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        answer = self.name.encode()
        handler = grpc.unary_unary_rpc_method_handler(lambda _req, _ctx: answer)
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("xdscp.test.Echo", {"Who": handler})])
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None


def grpc_bootstrap(path: Path, xds_address: str, node_id: str = "proxyless-1",
                   locality: dict[str, str] | None = None) -> Path:
    """A gRPC xDS bootstrap pointing at xdscp (SotW ADS, insecure); ``locality``: the node's
    (``region``, ``zone``)."""
    path.write_text(json.dumps({
        "xds_servers": [{"server_uri": xds_address, "channel_creds": [{"type": "insecure"}],
                         "server_features": ["xds_v3"]}],
        "node": {"id": node_id, "cluster": "proxyless", "locality": locality or {}},
    }))
    return path


class ProxylessClient:
    """grpc_xds_probe.py/.js in its own process (gRPC reads its xDS bootstrap once per process)."""

    def __init__(self, target: str, bootstrap: Path, node_modules: Path | None = None) -> None:
        """grpcio's client, or with ``node_modules`` grpc-js-xds's."""
        env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
        command = [sys.executable, str(PROBE), target]
        if node_modules is not None:
            env["NODE_PATH"] = str(node_modules)
            command = ["node", str(PROBE_JS), target]
        self._proc = subprocess.Popen(command, env=env, text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def calls(self, n: int) -> Counter[str]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"{n}\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise AssertionError(f"the gRPC client exited with {self._proc.wait()}")
        counts: dict[str, Any] = json.loads(line)
        return Counter({k: int(v) for k, v in counts.items()})

    def stop(self) -> None:
        terminate(self._proc, grace=2)
