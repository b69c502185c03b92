"""``xdscp demo``: xdscp's embedded registry, a real Envoy and three upstreams on loopback.

Prints what it changes in the registry and what Envoy then does, from Envoy's own
answers. Every process it starts is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.traffic import count_responses
from xdscp.local.upstream_process import UpstreamProcess

NAMES = ("alpha", "beta", "gamma")


@dataclass(frozen=True)
class Step:
    """One move of the tour, and which upstreams Envoy should route to after it."""

    title: str
    action: Callable[[], None]
    expect: frozenset[str]  # upstream names Envoy should send traffic to (empty: 503)


class Demo:
    """Three upstream processes register themselves in xdscp's embedded registry; a real
    Envoy routes to them; each step changes something and shows what Envoy then does."""

    def __init__(self, workdir: Path, mode: str, out: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.mode = mode
        self.say = out
        self.upstreams: dict[str, UpstreamProcess] = {}
        self.xdscp: XdscpProcess | None = None
        self.envoy: EnvoyProcess | None = None

    def spread(self, n: int = 30) -> Counter[str]:
        assert self.xdscp is not None
        return count_responses(self.xdscp.listener_port, "echo", n)

    def healthy_hosts(self) -> set[str]:
        assert self.envoy is not None
        return {a for a, h in self.envoy.cluster_hosts("echo").items() if h["eds_health"] == "HEALTHY"}

    def wait_for(self, names: frozenset[str], timeout: float = 15.0) -> float:
        """Seconds until Envoy's /clusters shows exactly these upstreams healthy."""
        want = {self.upstreams[n].address for n in names}
        start = time.monotonic()
        while self.healthy_hosts() != want:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"Envoy did not reach {sorted(names)} in {timeout}s")
            time.sleep(0.01)
        return time.monotonic() - start

    def steps(self) -> list[Step]:
        up = self.upstreams
        every = frozenset(NAMES)
        return [
            Step("alpha, beta and gamma start and register themselves (POST /nacos/v1/ns/instance)",
                 lambda: self._start(*NAMES), every),
            Step("gamma's /health starts failing (503); xdscp's checks notice",
                 lambda: up["gamma"].set_health(False), frozenset({"alpha", "beta"})),
            Step("gamma's /health recovers", lambda: up["gamma"].set_health(True), every),
            Step("beta stops, deregistering itself (DELETE /nacos/v1/ns/instance)",
                 lambda: up["beta"].stop(), frozenset({"alpha", "gamma"})),
            Step("alpha and gamma stop too: no instance left", lambda: self._stop("alpha", "gamma"), frozenset()),
            Step("all three start again", lambda: self._start(*NAMES), every),
        ]

    def run(self, after_step: Callable[[Step], None] | None = None) -> None:
        """The whole tour; ``after_step`` (tests) runs once Envoy has followed each step."""
        self.xdscp = XdscpProcess(self.workdir, sources=[{
            "kind": "embedded", "database": str(self.workdir / "registry.db"),
            "instance_check": {"type": "http", "path": "/health", "interval": 0.5, "timeout": 0.5,
                               "healthy_threshold": 1, "unhealthy_threshold": 2},
        }]).start()
        self.say(f"xdscp: xDS on {self.xdscp.xds_address}, admin and registration API on "
                 f"http://{self.xdscp.admin_address}")
        self.say(f"console: http://{self.xdscp.admin_address}/ui/ (services, proxies, sources, pushes)")
        self.envoy = EnvoyProcess(REPO_ENVOY_DIR / f"bootstrap-{self.mode}.yaml", self.xdscp.xds_address,
                                  self.workdir).start()
        self.say(f"envoy: {self.mode} bootstrap, admin on {self.envoy.admin_url}, "
                 f"listener on 127.0.0.1:{self.xdscp.listener_port} (routes Host: echo)")
        self.upstreams = {n: UpstreamProcess(n, self.xdscp.admin_address, self.workdir) for n in NAMES}
        for step in self.steps():
            self.say(f"\n== {step.title}")
            step.action()
            took = self.wait_for(step.expect)
            self.say(f"   Envoy's /clusters shows {len(step.expect)} healthy host(s) after {took * 1000:.0f} ms")
            self.say(f"   30 requests through Envoy: {dict(sorted(self.spread().items()))}")
            if after_step is not None:
                after_step(step)

    def _start(self, *names: str) -> None:
        for n in names:
            self.upstreams[n].start()

    def _stop(self, *names: str) -> None:
        for n in names:
            self.upstreams[n].stop()

    def stop(self) -> None:
        for u in self.upstreams.values():
            u.stop()
        if self.envoy is not None:
            self.envoy.stop()
        if self.xdscp is not None:
            self.xdscp.stop()


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="xdscp-demo-") as d:
            yield Path(d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="xdscp demo", description="Run xdscp's embedded registry, a real Envoy and three upstreams on "
        "loopback. The tour changes the registry step by step and shows what Envoy then does, from Envoy's own "
        "answers. Every process it starts is stopped on exit or Ctrl-C.")
    p.add_argument("--mode", choices=["ads", "delta"], default="ads",
                   help="the Envoy bootstrap: State-of-the-World ADS or Delta ADS (default: ads)")
    p.add_argument("--hold", action="store_true", help="keep everything running after the tour, until Ctrl-C")
    p.add_argument("--workdir", type=Path, help="where configs and logs go (default: a temporary directory, "
                                                "removed on exit)")
    args = p.parse_args(argv)
    with _workdir(args.workdir) as wd:
        demo = Demo(wd, args.mode)
        try:
            demo.run()
            if args.hold:
                print(f"\nrunning; the console: http://{demo.xdscp.admin_address}/ui/ ; Ctrl-C stops everything"
                      if demo.xdscp is not None else "\nrunning; Ctrl-C stops everything")
                while True:
                    time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            demo.stop()
            print("\nstopped xdscp, Envoy and the upstreams")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
