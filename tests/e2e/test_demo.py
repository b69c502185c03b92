"""The `make demo` tour, checked from what Envoy reports, and its clean exit."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from xdscp.local.demo import Demo, Step
from xdscp.local.traffic import count_responses

pytestmark = pytest.mark.envoy


def test_every_step_of_the_tour_as_envoy_sees_it(tmp_path: Path) -> None:
    demo = Demo(tmp_path, "ads", out=lambda _: None)
    checked: list[str] = []

    def check(step: Step) -> None:
        assert demo.envoy is not None and demo.xdscp is not None
        healthy = {a for a, h in demo.envoy.cluster_hosts("echo").items() if h["eds_health"] == "HEALTHY"}
        assert healthy == {demo.upstreams[n].address for n in step.expect}, step.title
        traffic = count_responses(demo.xdscp.listener_port, "echo", 30)
        assert set(traffic) == (set(step.expect) or {"HTTP 503"}), step.title
        if step.expect:
            assert max(traffic.values()) - min(traffic.values()) <= 1, traffic  # an even spread
        checked.append(step.title)

    try:
        demo.run(after_step=check)
    finally:
        demo.stop()
    assert len(checked) == 6


def running_in(workdir: Path) -> list[str]:
    """Command lines of processes whose working directory is ``workdir`` (every demo child's)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cwd").resolve() == workdir.resolve():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass  # exited meanwhile, or not ours to read
    return found


def test_demo_command_exits_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    workdir = tmp_path / "demo-run"
    proc = subprocess.Popen([sys.executable, "-m", "xdscp", "demo", "--hold", "--workdir", str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
            break
    assert any("Ctrl-C" in ln for ln in lines), "".join(lines)
    running = running_in(workdir)
    assert len(running) == 5, running  # xdscp, Envoy and three upstreams
    # The console it prints stays browsable while it holds, with the tour's service.
    console = re.search(r"the console: (http://\S+/ui/)", lines[-1])
    assert console is not None, lines[-1]
    with urllib.request.urlopen(console.group(1), timeout=10) as r:
        assert r.status == 200 and 'data-service="echo"' in r.read().decode()
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "stopped xdscp, Envoy and the upstreams" in rest
    assert running_in(workdir) == []
