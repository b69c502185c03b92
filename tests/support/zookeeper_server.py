"""A real ZooKeeper (Debian's zookeeper package) on a free loopback port, and Dubbo-style providers.

A provider here registers the way Dubbo's ZookeeperRegistry does: its URL, URL-encoded,
as an ephemeral znode under ``/dubbo/<interface>/providers``, held by its own session.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote, urlencode

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

from xdscp.local.ports import free_port
from xdscp.local.processes import terminate, wait_ready

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")


def zookeeper_available() -> bool:
    return ZOOKEEPER_JAR.exists() and shutil.which("java") is not None


class ZooKeeperServer:
    """One standalone server; ``restart()`` keeps its data directory and port."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "zookeeper"
        self.port = free_port()
        self.hosts = f"127.0.0.1:{self.port}"
        self.log_path = self.dir / "zookeeper.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ZooKeeperServer:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "zoo.cfg"
        cfg.write_text(f"tickTime=500\ndataDir={self.dir / 'data'}\nclientPort={self.port}\n"
                       "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                       "4lw.commands.whitelist=srvr\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n")
        java = shutil.which("java")
        assert java is not None and ZOOKEEPER_JAR.exists(), "make sysdeps installs zookeeper"
        cmd = [java, "-Xmx256m", f"-Dzookeeper.log.dir={self.dir}", "-cp", str(ZOOKEEPER_JAR),
               "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)]
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_ready(self._proc, self._ok, "zookeeper", lambda: self.log_path.read_text()[-2000:], 30)
        return self

    def _ok(self) -> bool:
        # "srvr" answers "Mode: standalone" only once the server takes sessions ("ruok" can
        # say imok a moment before).
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"srvr")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            return b"Mode: standalone" in answer

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc, grace=5)
            self._proc = None

    def client(self, session_timeout: float = 10.0) -> KazooClient:
        """A started client; the caller stops it."""
        zk = KazooClient(hosts=self.hosts, timeout=session_timeout,
                         connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0))
        zk.start(timeout=20)
        return zk


def provider_znode(interface: str, port: int, host: str = "127.0.0.1", protocol: str = "dubbo",
                   **params: str) -> str:
    """The znode name Dubbo registers for a provider (its URL, URL-encoded)."""
    query = urlencode({"interface": interface, "side": "provider", "category": "providers",
                       "timestamp": "1700000000000", "pid": "4242", "methods": "sayHello,sayBye", **params})
    return quote(f"{protocol}://{host}:{port}/{interface}?{query}", safe="")


class DubboProvider:
    """One provider process's registration: an ephemeral znode held by its own session."""

    def __init__(self, zk: ZooKeeperServer, interface: str, port: int, root: str = "/dubbo",
                 **params: str) -> None:
        self.path = f"{root}/{interface}/providers/{provider_znode(interface, port, **params)}"
        self.session = zk.client()
        self.session.create(self.path, ephemeral=True, makepath=True)

    def stop(self) -> None:
        """The provider exits: its session closes and ZooKeeper deletes the znode."""
        self.session.stop()
        self.session.close()
