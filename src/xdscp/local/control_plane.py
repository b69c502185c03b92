"""Run ``xdscp serve`` as its own process, as a user would, on free loopback ports."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from xdscp.local.ports import free_port, free_port_pair
from xdscp.local.processes import terminate, wait_ready
from xdscp.nacos_protocol import GRPC_PORT_OFFSET


class XdscpProcess:
    """An ``xdscp serve`` child; ``listener_port`` is Envoy's ingress.

    Fed by the registry file ``registry``, or by ``sources`` (config dicts) when given.
    It can be stopped and started again on the same ports, as a restarted server is.
    """

    def __init__(self, workdir: Path, registry: Path | None = None, *, listener_port: int | None = None,
                 poll_interval: float = 0.02, log_level: str = "info", name: str = "xdscp",
                 xds_settings: dict[str, Any] | None = None,
                 sources: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None,
                 listener: dict[str, Any] | None = None) -> None:
        """``extra``: more top-level config sections (``authorization``, ``mcp``...);
        ``listener``: more listener settings (``on_demand``...)."""
        if sources is None:
            if registry is None:
                raise ValueError("give a registry file or sources")
            sources = [{"kind": "file", "name": "file", "path": str(registry), "poll_interval": poll_interval}]
        self.workdir = workdir
        self.xds_port = free_port()
        self.admin_port = free_port_pair(GRPC_PORT_OFFSET)  # the embedded registry's Nacos gRPC: + 1000
        self.listener_port = listener_port or free_port()
        self.log_path = workdir / f"{name}.log"
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump({
            "xds": {"address": f"127.0.0.1:{self.xds_port}", **(xds_settings or {})},
            "admin": {"address": f"127.0.0.1:{self.admin_port}"},
            "listener": {"address": "127.0.0.1", "port": self.listener_port, **(listener or {})},
            "sources": sources,
            **(extra or {}),
        }))
        self.log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def admin_address(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    @property
    def xds_address(self) -> str:
        return f"127.0.0.1:{self.xds_port}"

    def start(self, timeout: float = 20.0) -> XdscpProcess:
        self._log = self.log_path.open("ab")
        cmd = [sys.executable, "-m", "xdscp", "serve", "--config", str(self.config_path),
               "--log-level", self.log_level]
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_ready(self._proc, lambda: bool(self.admin("/readyz")["ready"]), "xdscp",
                   lambda: self.log_text()[-2000:], timeout)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None

    def admin(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def acked(self, in_sync: bool = False) -> dict[str, str] | None:
        """type URL -> the version the open streams' client ACKed (tests that use it hold
        one Envoy). With ``in_sync``: None until the last response of every type is ACKed,
        so a push still in flight is not taken for what the client holds."""
        types = [(url, t) for n in self.admin("/debug/nodes")["nodes"] for url, t in n["types"].items()]
        if in_sync and not (types and all(t["version_acked"] and t["version_acked"] == t["version_sent"]
                                          for _, t in types)):
            return None
        return {url: t["version_acked"] for url, t in types}

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as a crashed or OOM-killed process."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
