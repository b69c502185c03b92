"""Stopping child processes politely, then firmly."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_ready(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str,
               log_tail: Callable[[], str], timeout: float = 20.0) -> None:
    """Poll ``ready()`` until true; fail early if the process exits, with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log_tail()}")
        try:
            if ready():
                return
        except (OSError, ValueError):
            pass  # not listening yet, or an answer that is not JSON yet
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready in {timeout}s: {log_tail()}")
