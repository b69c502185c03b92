"""The README's "Run it", followed literally: its config saved as xdscp.yaml, its commands run
by bash, with a real Envoy, a real upstream and curl. The one liberty taken: the README's
ports (18000, 19000, 10000, 8080, 9901) become free ones, in the commands, the config and
a copy of the Envoy bootstraps, so the test cannot collide with anything on the machine."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from xdscp.local.envoy import REPO_ENVOY_DIR
from xdscp.local.ports import free_port, free_port_pair
from xdscp.nacos_protocol import GRPC_PORT_OFFSET

pytestmark = pytest.mark.envoy

REPO = Path(__file__).resolve().parents[2]
README_PORTS = ("18000", "19000", "10000", "8080", "9901")


def run_it_section() -> tuple[str, str]:
    """The README's "Run it" config (the yaml block) and commands (the sh block)."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Run it", 1)[1].split("\n## ", 1)[0]
    (config,) = re.findall(r"```yaml\n(.*?)```", section, re.S)[:1]
    (commands,) = re.findall(r"```sh\n(.*?)```", section, re.S)[:1]
    return config, commands


def test_the_readme_config_and_commands_work_as_written(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")  # the README's commands need it; CI machines have it
    config, commands = run_it_section()
    assert "kind: nacos" in config and "required: false" in config  # the sample names a registry not running
    ports = {"19000": str(free_port_pair(GRPC_PORT_OFFSET))}  # the admin port, with its Nacos gRPC port free too
    ports |= {p: str(free_port()) for p in README_PORTS if p not in ports}
    nacos = str(free_port())  # closed: as on a fresh machine, no Nacos runs there

    def local(text: str) -> str:
        text = text.replace("8848", nacos)
        return re.sub(r"\b(" + "|".join(README_PORTS) + r")\b", lambda m: ports[m.group(1)], text)

    (tmp_path / "xdscp.yaml").write_text(local(config))
    (tmp_path / "envoy").mkdir()
    for bootstrap in REPO_ENVOY_DIR.glob("*.yaml"):
        (tmp_path / "envoy" / bootstrap.name).write_text(local(bootstrap.read_text()))
    (tmp_path / ".venv").symlink_to(sys.prefix)  # the venv running these tests (make test's .venv)
    script = tmp_path / "run-it.sh"
    script.write_text(local(commands))
    proc = subprocess.Popen(["bash", str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, "NO_PROXY": "127.0.0.1"})
    try:
        out, err = proc.communicate(timeout=150)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the script left behind
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    # The registration answered "ok", and the last curl got the upstream's 200 page through Envoy
    # (Envoy's own 503 reads "no healthy upstream").
    assert re.search(r"^ok", out, re.M), out
    assert "Directory listing for /" in out, f"stdout:\n{out}\nstderr:\n{err}"
    # xdscp said why it published without the Nacos source: the README's claim, in its log.
    assert "event=publish.without_sources" in err and "nacos-1" in err, err
