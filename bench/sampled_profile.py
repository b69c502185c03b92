"""A sampling profile of another process over a window: py-spy attached by pid, and the
frames with the most self time printed. Benchmarks use it with ``--profile`` so the
profile's top entries come from the same run as the figures.

py-spy is not a dependency: ``pip install py-spy`` (it needs ptrace permission on the
process, which a process's own children allow by default on Debian).
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def sampled(pid: int, label: str, rate: int = 250, top: int = 10) -> Iterator[None]:
    """Sample ``pid`` (all its threads, idle ones left out) while the block runs, then print
    the ``top`` frames by self time, in % of the samples."""
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if spy is None:
        print(f"profile {label}: py-spy not found (pip install py-spy); no profile taken")
        yield
        return
    with tempfile.TemporaryDirectory(prefix="xdscp-profile-") as d:
        out = Path(d) / "stacks.txt"
        proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(rate), "--threads", "--nonblocking",
                                 "--format", "raw", "--output", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not out.exists():
            print(f"profile {label}: py-spy wrote nothing (ptrace not permitted?)")
            return
        self_time: collections.Counter[str] = collections.Counter()
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                self_time[_frame(stack.rsplit(";", 1)[-1])] += int(count)
        total = sum(self_time.values()) or 1
        print(f"profile {label}: {total} samples at {rate} Hz, self time")
        for frame, n in self_time.most_common(top):
            print(f"  {100 * n / total:5.1f}%  {frame}")


def _frame(frame: str) -> str:
    """``function (path/to/file.py:123)`` shortened to ``function (file.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')').rsplit(':', 1)[0]).name})" if where else name
