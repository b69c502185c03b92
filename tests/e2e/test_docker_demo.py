"""The docker-compose demo, built and run for real, and the same tour as `make demo`.

A real Docker daemon (the machine's, or a private dockerd this test starts as root),
images built offline (docker_harness.py), `docker compose up -d --build` with Compose
v2, and every step asserted from Envoy's admin API and response bodies through
Envoy's published listener. If the daemon cannot start, the test fails with the
reason. `make test-fast` leaves it out.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import compose
import pytest

from xdscp.local.envoy import EnvoyAdmin
from xdscp.local.ports import free_port
from xdscp.local.traffic import count_responses

from docker_harness import REPO, DockerDaemon, download_wheels, ensure_base_image
from waiting import until

pytestmark = [pytest.mark.docker, pytest.mark.envoy]
COMPOSE = Path(compose.__file__).parent / "docker-compose"
PORT_VARS = ("XDSCP_XDS_PORT", "XDSCP_ADMIN_PORT", "XDSCP_NACOS_GRPC_PORT", "ENVOY_LISTENER_PORT", "ENVOY_ADMIN_PORT",
             "ALPHA_PORT", "BETA_PORT", "GAMMA_PORT")


@dataclass
class ComposeStack:
    env: dict[str, str]
    project: str
    envoy: EnvoyAdmin

    def compose(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        cmd = [str(COMPOSE), "-f", str(REPO / "docker-compose.yml"), "-p", self.project, *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def port(self, var: str) -> int:
        return int(self.env[var])

    def requests(self, n: int = 30) -> Counter[str]:
        return count_responses(self.port("ENVOY_LISTENER_PORT"), "echo", n)

    def healthy(self) -> int:
        return sum(1 for h in self.envoy.cluster_hosts("echo").values() if h["eds_health"] == "HEALTHY")

    def hosts(self) -> int:
        return len(self.envoy.cluster_hosts("echo"))

    def set_health(self, upstream: str, ok: bool) -> None:
        port = self.port(f"{upstream.upper()}_PORT")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/health/{'ok' if ok else 'fail'}", method="POST")
        urllib.request.urlopen(req, timeout=5).close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    daemon = DockerDaemon(tmp_path_factory.mktemp("dockerd")).start()
    project = f"xdscp-test-{os.getpid()}"
    st: ComposeStack | None = None
    try:
        base = ensure_base_image(daemon)
        download_wheels(REPO / "docker" / "wheels")
        ports = {var: str(free_port()) for var in PORT_VARS}
        env = {**daemon.env, **ports, "BASE_IMAGE": base, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/wheels"}
        st = ComposeStack(env, project, EnvoyAdmin(f"http://127.0.0.1:{ports['ENVOY_ADMIN_PORT']}"))
        up = st.compose("up", "-d", "--build", "--wait", "--wait-timeout", "300")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield st
    finally:
        if st is not None:
            if os.environ.get("XDSCP_KEEP_LOGS"):
                print(st.compose("logs", "--no-color").stdout[-5000:])
            st.compose("down", "-v", "--remove-orphans", "--timeout", "5")
        daemon.stop()


def test_the_demo_tour_on_docker_compose(stack: ComposeStack) -> None:
    until(lambda: stack.envoy.ready() and stack.healthy() == 3, timeout=60, what="3 upstreams registered")
    seen = stack.requests(30)
    assert set(seen) == {"alpha", "beta", "gamma"} and max(seen.values()) - min(seen.values()) <= 1

    stack.set_health("gamma", ok=False)
    until(lambda: stack.healthy() == 2 and stack.hosts() == 3, timeout=15, what="gamma failing its checks")
    assert set(stack.requests(30)) == {"alpha", "beta"}

    stack.set_health("gamma", ok=True)
    until(lambda: stack.healthy() == 3, timeout=15, what="gamma recovered")
    assert set(stack.requests(30)) == {"alpha", "beta", "gamma"}

    assert stack.compose("stop", "beta").returncode == 0  # beta deregisters itself on SIGTERM
    until(lambda: stack.hosts() == 2, timeout=15, what="beta deregistered")
    assert set(stack.requests(30)) == {"alpha", "gamma"}

    assert stack.compose("stop", "alpha", "gamma").returncode == 0
    until(lambda: stack.hosts() == 0, timeout=15, what="no instance left")
    assert stack.requests(10) == Counter({"HTTP 503": 10})

    assert stack.compose("start", "alpha", "beta", "gamma").returncode == 0
    until(lambda: stack.healthy() == 3, timeout=60, what="all three back")
    assert set(stack.requests(30)) == {"alpha", "beta", "gamma"}
