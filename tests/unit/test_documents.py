"""Registry files and configs: errors name the file, the field and the line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xdscp.config import load_config
from xdscp.errors import ConfigError, DocumentError
from xdscp.model.naming import cluster_name
from xdscp.model.service import ServiceKey
from xdscp.sources.registry_file import parse_registry_file

GOOD = b"""
services:
  - name: echo
    lb_policy: LEAST_REQUEST
    instances:
      - host: 10.0.0.1
        port: 8080
        metadata: {version: 2, canary: true}
"""


def test_good_file_parses() -> None:
    (svc,) = parse_registry_file(GOOD, "reg.yaml")
    assert svc.key == ServiceKey("public", "DEFAULT_GROUP", "echo")
    assert svc.instances[0].metadata == {"version": "2", "canary": "true"}


@pytest.mark.parametrize(("text", "expected"), [
    (b"services:\n  - name: echo\n    instances:\n      - host: 10.0.0.1\n        port: 70000\n",
     "line 5: services[0].instances[0].port: Input should be less than or equal to 65535"),
    (b"services:\n  - name: echo\n    instances:\n      - {host: my-host, port: 80}\n",
     "services[0].instances[0].host"),
    (b"services:\n  - name: echo\n    lb_policy: FASTEST\n", "line 3: services[0].lb_policy"),
    (b"services:\n  - name: 'bad name'\n", "services[0].name"),
    (b"services:\n  - name: echo\n  - name: echo\n", "listed twice"),
    (b"services:\n  - name: echo\n    colour: blue\n", "services[0].colour: Extra inputs are not permitted"),
    (b"services: [\n", "invalid YAML"),
    (b"- just a list\n", "top level must be a mapping"),
    (b"", "the file is empty; write 'services: []'"),
    (b"# only a comment\n\n", "the file is empty"),
    (b"services:\n  - name: e\n    hash_policy: {header: 'x user'}\n", "line 3: services[0].hash_policy.header"),
    (b"services:\n  - name: e\n    health_check: {path: '/he alth'}\n", "services[0].health_check.path"),
    (b"services:\n  - name: e\n    instances: [{host: 10.0.0.1, port: 1}, {host: 10.0.0.1, port: 1}]\n",
     "listed twice"),
])
def test_bad_files_are_rejected_with_location(text: bytes, expected: str) -> None:
    with pytest.raises(DocumentError) as info:
        parse_registry_file(text, "reg.yaml")
    assert str(info.value).startswith("reg.yaml: ")
    assert expected in str(info.value)


def test_an_explicitly_empty_registry_is_fine() -> None:
    assert parse_registry_file(b"services: []\n", "reg.yaml") == []


def test_json_registry_and_json_errors() -> None:
    (svc,) = parse_registry_file(b'{"services": [{"name": "echo", "instances": []}]}', "reg.json")
    assert svc.name == "echo"
    with pytest.raises(DocumentError, match="line 2: invalid JSON"):
        parse_registry_file(b'{"services":\n [}', "reg.json")


def test_naming_rule() -> None:
    assert cluster_name(ServiceKey("public", "DEFAULT_GROUP", "echo")) == "echo"
    assert cluster_name(ServiceKey("public", "payments", "orders")) == "orders.payments.public"
    assert cluster_name(ServiceKey("prod", "DEFAULT_GROUP", "orders")) == "orders.DEFAULT_GROUP.prod"


def test_config_defaults_relative_paths_and_errors(tmp_path: Path) -> None:
    cfg_path = tmp_path / "xdscp.yaml"
    cfg_path.write_text("sources:\n  - kind: file\n    path: reg.yaml\n")
    cfg = load_config(cfg_path)
    assert cfg.xds.address == "127.0.0.1:18000" and cfg.admin.address == "127.0.0.1:19000"
    assert cfg.listener.name == "ingress_http" and cfg.listener.port == 10000
    assert cfg.sources[0].path == tmp_path / "reg.yaml"
    cfg_path.write_text("xds: {address: nowhere}\nnode_group_by: colour\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg_path)
    assert "line 1: xds.address" in str(info.value) and "node_group_by" in str(info.value)
    cfg_path.write_text("sources:\n  - {kind: consul-but-not-yet, path: x}\n")
    with pytest.raises(ConfigError, match="sources\\[0\\]: Input tag 'consul-but-not-yet'.*'file', 'embedded'"):
        load_config(cfg_path)


@pytest.mark.parametrize(("source", "expected"), [
    ("{kind: zookeeper, hosts: ['zk:2181/dubbo']}", "the port '2181/dubbo' is not a number"),
    ("{kind: zookeeper, hosts: []}", "at least 1 item"),
    ("{kind: zookeeper, root: /}", "must start with '/' and not be '/' itself"),
    ("{kind: etcd, prefix: services}", "must start with '/' and not be '/' itself"),
    ("{kind: nacos, servers: ['nacos:8848']}", "is not an http:// or https:// URL"),
    ("{kind: nacos, startup_grace: 5}", "startup_grace applies only with required: false"),
    ("{kind: http, url: 'http://x/', required: false, startup_grace: -1}", "greater than or equal to 0"),
])
def test_remote_source_settings_are_checked(tmp_path: Path, source: str, expected: str) -> None:
    cfg_path = tmp_path / "xdscp.yaml"
    cfg_path.write_text(f"sources:\n  - {source}\n")
    with pytest.raises(ConfigError, match="sources\\[0\\]") as info:
        load_config(cfg_path)
    assert expected in str(info.value)


def test_zookeeper_source_defaults(tmp_path: Path) -> None:
    cfg_path = tmp_path / "xdscp.yaml"
    cfg_path.write_text("sources:\n  - {kind: zookeeper, hosts: ['10.0.0.1:2181', '[::1]:2181']}\n")
    src = load_config(cfg_path).sources[0]
    assert src.kind == "zookeeper" and src.root == "/dubbo" and src.namespace == "public"


REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_yaml_example_in_the_readme_and_docs_is_valid(tmp_path: Path) -> None:
    configs: list[tuple[str, str]] = []
    registries: list[tuple[str, str]] = []
    for doc in DOCUMENTS:
        for block in re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S):
            if re.search(r"^(sources|xds|mcp):", block, re.M):
                configs.append((doc.name, block))
            elif block.startswith("services:"):
                registries.append((doc.name, block))
    assert len(configs) >= 7 and registries  # the README's, one per source, plus the full config
    assert "README.md" in {name for name, _ in configs}
    for i, (name, block) in enumerate(configs):
        path = tmp_path / f"example-{i}.yaml"
        path.write_text(block)
        try:
            load_config(path)  # raises ConfigError naming the line
        except ConfigError as e:
            raise AssertionError(f"a config example in {name}: {e}") from None
    for name, block in registries:
        parse_registry_file(block.encode(), name)
