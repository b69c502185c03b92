"""The xdscp command line: validate, serve overrides, bootstrap rendering."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from xdscp.cli.main import main
from xdscp.local.envoy import REPO_ENVOY_DIR
from xdscp.local.ports import free_port
from xdscp.local.processes import terminate


def test_validate_ok_and_failing(tmp_path: Path, capsys) -> None:
    (tmp_path / "reg.yaml").write_text("services:\n  - {name: echo, instances: [{host: 10.0.0.1, port: 80}]}\n")
    cfg = tmp_path / "xdscp.yaml"
    cfg.write_text("sources:\n  - {kind: file, path: reg.yaml}\n")
    assert main(["validate", "--config", str(cfg)]) == 0
    assert "ok (1 source(s))" in capsys.readouterr().out

    (tmp_path / "reg.yaml").write_text("services:\n  - {name: echo, instances: [{host: 10.0.0.1, port: 0}]}\n")
    assert main(["validate", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "source file-0 (file): line 2: services[0].instances[0].port" in err

    (tmp_path / "reg.yaml").unlink()
    assert main(["validate", "--config", str(cfg)]) == 1
    assert "cannot read" in capsys.readouterr().err

    (tmp_path / "a-file").write_text("")
    cfg.write_text(f"sources: [{{kind: embedded, database: {tmp_path / 'a-file' / 'cannot.db'}}}]\n")
    assert main(["validate", "--config", str(cfg)]) == 1
    assert "cannot open the embedded registry database" in capsys.readouterr().err

    cfg.write_text("admin: {address: 1.2.3.4}\n")
    assert main(["validate", "--config", str(cfg)]) == 1
    assert "admin.address" in capsys.readouterr().err


def test_demo_options_reach_the_demo(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--mode", "delta", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: xdscp demo" in out and "--hold" in out and "--workdir" in out


def test_serve_refuses_a_broken_config(tmp_path: Path) -> None:
    cfg = tmp_path / "xdscp.yaml"
    cfg.write_text("listener: {port: -1}\n")
    proc = subprocess.run([sys.executable, "-m", "xdscp", "serve", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "listener.port" in proc.stderr


def test_serve_address_flags_override_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "xdscp.yaml"
    cfg.write_text("xds: {address: 127.0.0.1:1}\nadmin: {address: 127.0.0.1:1}\n")
    xds, admin = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "xdscp", "serve", "--config", str(cfg),
                             "--xds-address", f"127.0.0.1:{xds}", "--admin-address", f"127.0.0.1:{admin}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=2) as r:
                    assert json.loads(r.read())["ready"] is True
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "xdscp did not come up on the overridden admin address"
                time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", xds), timeout=2):
            pass  # the xDS port listens where the flag said
    finally:
        terminate(proc)
    assert proc.returncode == 0  # SIGTERM is a clean, graceful stop


def test_serve_says_which_port_is_taken(tmp_path: Path) -> None:  # no config: embedded db in cwd
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        for flag, other, label in (("--xds-address", "--admin-address", "xDS"),
                                   ("--admin-address", "--xds-address", "admin")):
            proc = subprocess.run([sys.executable, "-m", "xdscp", "serve", flag, busy, other,
                                   f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=30,
                                  cwd=tmp_path)
            assert proc.returncode == 1
            assert "Traceback" not in proc.stderr
            line = proc.stderr.strip().splitlines()[-1]
            assert line.startswith(f"xdscp: cannot listen for {label} on {busy}: ")
            assert "in use" in line


def test_bootstrap_points_a_template_at_an_address(capsys) -> None:
    for mode, api in (("ads", "GRPC"), ("delta", "DELTA_GRPC"), ("per-type", None)):
        assert main(["bootstrap", "--template", str(REPO_ENVOY_DIR / f"bootstrap-{mode}.yaml"),
                     "--xds-address", "10.1.2.3:1234", "--admin-port", "9911", "--node-id", "gw-7"]) == 0
        doc = yaml.safe_load(capsys.readouterr().out)
        if api is None:
            assert "ads_config" not in doc["dynamic_resources"]
        else:
            assert doc["dynamic_resources"]["ads_config"]["api_type"] == api
        xds = doc["static_resources"]["clusters"][0]
        sa = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        assert (sa["address"], sa["port_value"]) == ("10.1.2.3", 1234)
        assert doc["admin"]["address"]["socket_address"]["port_value"] == 9911
        assert doc["node"]["id"] == "gw-7"
