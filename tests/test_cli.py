"""The xdscp command line: validate, serve overrides, bootstrap rendering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from xdscp.cli.main import main
from xdscp.local.envoy import REPO_ENVOY_DIR


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

    cfg.write_text("admin: {address: 1.2.3.4}\n")
    assert main(["validate", "--config", str(cfg)]) == 1
    assert "admin.address" in capsys.readouterr().err


def test_serve_refuses_a_broken_config(tmp_path: Path) -> None:
    cfg = tmp_path / "xdscp.yaml"
    cfg.write_text("listener: {port: -1}\n")
    proc = subprocess.run([sys.executable, "-m", "xdscp", "serve", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "listener.port" in proc.stderr


def test_bootstrap_points_a_template_at_an_address(capsys) -> None:
    for mode, api in (("ads", "GRPC"), ("delta", "DELTA_GRPC")):
        assert main(["bootstrap", "--template", str(REPO_ENVOY_DIR / f"bootstrap-{mode}.yaml"),
                     "--xds-address", "10.1.2.3:1234", "--admin-port", "9911", "--node-id", "gw-7"]) == 0
        doc = yaml.safe_load(capsys.readouterr().out)
        assert doc["dynamic_resources"]["ads_config"]["api_type"] == api
        xds = doc["static_resources"]["clusters"][0]
        sa = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        assert (sa["address"], sa["port_value"]) == ("10.1.2.3", 1234)
        assert doc["admin"]["address"]["socket_address"]["port_value"] == 9911
        assert doc["node"]["id"] == "gw-7"
