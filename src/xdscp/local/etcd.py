"""A real etcd (Debian's etcd-server package) on free loopback ports, for tests and benchmarks."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from xdscp.local.ports import free_port
from xdscp.local.processes import terminate, wait_ready
from xdscp.sources.etcd.client import b64


def etcd_binary() -> str | None:
    return shutil.which("etcd")


class EtcdServer:
    """One etcd member (alone, or in a cluster from ``etcd_cluster``); ``restart()`` keeps
    its data directory and ports."""

    def __init__(self, workdir: Path, name: str = "t") -> None:
        self.name = name
        self.data = workdir / f"etcd-{name}"
        self.client_port, self.peer_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.peers = {name: self.peer_url}  # the initial cluster
        self.log_path = workdir / f"etcd-{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EtcdServer:
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> None:
        binary = etcd_binary()
        assert binary is not None, "etcd is not installed (Debian: apt-get install etcd-server)"
        cmd = [binary, "--name", self.name, "--data-dir", str(self.data),
               "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
               "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
               "--initial-cluster", ",".join(f"{n}={u}" for n, u in sorted(self.peers.items())),
               "--log-level", "warn"]
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        """Until the member answers healthy (a cluster member: once it has a quorum)."""
        assert self._proc is not None
        wait_ready(self._proc, self._healthy, "etcd", lambda: self.log_path.read_text()[-2000:], 30)

    def _healthy(self) -> bool:
        with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
            return bool(json.loads(r.read()).get("health") == "true")

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc, grace=5)
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return dict(json.loads(r.read()))

    def put(self, key: str, value: Any) -> int:
        raw = value if isinstance(value, str) else json.dumps(value)
        out = self.call("/v3/kv/put", {"key": b64(key), "value": b64(raw)})
        return int(out["header"]["revision"])

    def delete(self, key: str) -> int:
        return int(self.call("/v3/kv/deleterange", {"key": b64(key)})["header"]["revision"])

    def compact(self, revision: int) -> None:
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})


def etcd_cluster(workdir: Path, size: int = 3) -> list[EtcdServer]:
    """``size`` members on loopback forming one cluster, started together (each needs a quorum)."""
    members = [EtcdServer(workdir, f"m{i}") for i in range(size)]
    peers = {m.name: m.peer_url for m in members}
    try:
        for m in members:
            m.peers = peers
            m.launch()
        for m in members:
            m.wait_ready()
    except BaseException:
        for m in members:
            m.stop()
        raise
    return members
