"""The xdscp command line: validate, serve overrides, bootstrap rendering."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from xdscp.cli.main import _parser, main
from xdscp.local.envoy import REPO_ENVOY_DIR
from xdscp.local.ports import free_port
from xdscp.local.processes import terminate


def test_validate_ok_and_failing(tmp_path: Path, capsys) -> None:
    (tmp_path / "reg.yaml").write_text("services:\n  - {name: echo, instances: [{host: 10.0.0.1, port: 80}]}\n")
    cfg = tmp_path / "xdscp.yaml"
    cfg.write_text("sources:\n  - {kind: file, path: reg.yaml}\n")
    assert main(["validate", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "source file-0 (file): ok, 1 service\n" in out and "ok (1 source(s))" in out

    (tmp_path / "reg.yaml").write_text("services:\n  - {name: b, lb_policy: X}\n  - {name: echo, instances: "
                                       "[{host: 10.0.0.1, port: 0}]}\n")
    assert main(["validate", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.splitlines()
    reg = tmp_path / "reg.yaml"
    # one line for the source; its problems in line order; the file named once
    assert err[0].startswith(f"source file-0 (file): FAILED, {reg}: line 2: services[0].lb_policy: ")
    assert "; line 3: services[1].instances[0].port: Input should be greater than or equal to 1" in err[0]
    assert err[0].count(str(reg)) == 1 and err[1] == f"{cfg}: 1 of 1 source(s) failed"

    (tmp_path / "reg.yaml").unlink()
    assert main(["validate", "--config", str(cfg)]) == 1
    assert "cannot read" in capsys.readouterr().err

    (tmp_path / "a-file").write_text("")
    cfg.write_text(f"sources: [{{kind: embedded, database: {tmp_path / 'a-file' / 'cannot.db'}}}]\n")
    assert main(["validate", "--config", str(cfg)]) == 1
    assert "cannot open the embedded registry database" in capsys.readouterr().err

    cfg.write_text("listener: {port: 0}\nadmin: {address: '127.0.0.1:99999'}\n")
    assert main(["validate", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.count(str(cfg)) == 1, err  # the file named once
    assert "line 1: listener.port" in err.splitlines()[0] and err.index("line 1: listener") < err.index("line 2")
    assert "line 2: admin.address: Value error, '127.0.0.1:99999': the port 99999 is out of range (0-65535)" in err


def test_validate_reads_every_source_and_offline_skips_the_network(tmp_path: Path, capsys) -> None:
    closed = free_port()  # nothing listens: as a fresh machine with no registry running
    cfg = tmp_path / "xdscp.yaml"
    cfg.write_text(f"""sources:
  - kind: embedded
    database: reg.db
  - {{kind: nacos, servers: ['http://127.0.0.1:{closed}']}}
  - {{kind: http, url: 'http://127.0.0.1:{closed}/services'}}
  - {{kind: etcd, endpoints: ['http://127.0.0.1:{closed}']}}
  - {{kind: consul, address: 'http://127.0.0.1:{closed}'}}
  - {{kind: zookeeper, hosts: ['127.0.0.1:{closed}'], timeout: 1}}
""")
    started = time.monotonic()
    assert main(["validate", "--config", str(cfg), "--timeout", "3"]) == 1
    took = time.monotonic() - started
    out, err = capsys.readouterr()
    assert "source embedded-0 (embedded): ok, 0 services" in out
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert [line.split(" ", 2)[1] for line in failed] == ["nacos-1", "http-2", "etcd-3", "consul-4", "zookeeper-5"]
    assert all(str(closed) in line or "no answer within 3 s" in line for line in failed), failed
    assert err.splitlines()[-1] == f"{cfg}: 5 of 6 source(s) failed"
    print(f"validate with five unreachable sources took {took:.1f} s")  # read side by side, each bounded

    assert main(["validate", "--config", str(cfg), "--offline"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped, it reads a server (--offline)") == 5 and "embedded-0 (embedded): ok" in out


def test_cli_help_shows_defaults_and_hides_internal_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "worker" not in out and "exit codes: 0 success" in out
    for command, default in (("status", "(default: 127.0.0.1:19000)"), ("dump", "(default: 127.0.0.1:19000)"),
                             ("bootstrap", "(default: 127.0.0.1:18000)"), ("validate", "(default: 5.0)")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert default in out and "(default: None)" not in out, out
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        undocumented = [a.dest for a in sub._actions if not a.help]
        assert not undocumented, f"xdscp {name}: options without help: {undocumented}"
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "``" not in capsys.readouterr().out  # plain text, not reStructuredText


def test_bootstrap_with_a_bad_template_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "not-envoy.yaml").write_text("hello: world\n")
    (tmp_path / "broken.yaml").write_text("a: [\n")
    for template, expected in ((tmp_path / "missing.yaml", "cannot read the template"),
                               (tmp_path / "not-envoy.yaml", "is not an Envoy bootstrap like those in envoy/"),
                               (tmp_path / "broken.yaml", "is not YAML")):
        proc = subprocess.run([sys.executable, "-m", "xdscp", "bootstrap", "--template", str(template)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr


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
