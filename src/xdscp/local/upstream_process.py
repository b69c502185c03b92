"""Run ``python -m xdscp.local.upstream`` as its own process, registering itself in xdscp."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from xdscp.local.ports import free_port
from xdscp.local.processes import terminate, wait_ready


class UpstreamProcess:
    """A named upstream on a loopback port; registered in xdscp while it runs."""

    def __init__(self, name: str, registry: str, workdir: Path, service: str = "echo") -> None:
        self.name = name
        self.registry = registry
        self.service = service
        self.port = free_port()
        self.log_path = workdir / f"upstream-{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> UpstreamProcess:
        cmd = [sys.executable, "-m", "xdscp.local.upstream", "--name", self.name, "--port", str(self.port),
               "--register", self.registry, "--service", self.service]
        before = self._registrations()  # the log is appended to across restarts
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.log_path.parent)
        wait_ready(self._proc, lambda: self._registrations() > before, f"upstream {self.name}",
                   lambda: self.log_path.read_text()[-1000:], timeout)
        return self

    def _registrations(self) -> int:
        try:
            return self.log_path.read_text().count(": registered ")
        except FileNotFoundError:
            return 0

    def set_health(self, ok: bool) -> None:
        """Switch its /health endpoint to passing or failing."""
        req = urllib.request.Request(f"http://{self.address}/health/{'ok' if ok else 'fail'}", method="POST")
        urllib.request.urlopen(req, timeout=5).close()

    def stop(self) -> None:
        """SIGTERM: it deregisters itself, then exits."""
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None
