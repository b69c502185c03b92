"""Start, restart and stop the follower worker processes of one xdscp."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

from xdscp.background import cancel_and_wait
from xdscp.logfmt import log_event

log = logging.getLogger(__name__)


SETTINGS_ENV = "XDSCP_WORKER_SETTINGS"


class WorkerPool:
    """``count`` follower processes (``xdscp worker``), each restarted if it dies."""

    def __init__(self, count: int, upstream: str, xds_address: str, node_group_by: str,
                 settings: dict[str, Any] | None = None) -> None:
        """``settings``: what a follower applies as the owner does (limits, shutdown grace, TLS,
        node policy, the relay token; see run_follower). They reach it in its environment,
        not its command line, which other users can read."""
        self.count = count
        self.settings = dict(settings or {})
        self.upstream = upstream
        self.xds_address = xds_address
        self.node_group_by = node_group_by
        self.processes: list[asyncio.subprocess.Process | None] = [None] * count
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep(i)) for i in range(self.count)]

    def _argv(self) -> list[str]:
        level = logging.getLevelName(logging.getLogger("xdscp").getEffectiveLevel()).lower()
        if level not in ("debug", "info", "warning", "error"):
            level = "info"
        return [sys.executable, "-m", "xdscp", "worker", "--upstream", self.upstream,
                "--xds-address", self.xds_address, "--node-group-by", self.node_group_by,
                "--log-level", level]

    async def _keep(self, index: int) -> None:
        while True:
            env = {**os.environ, SETTINGS_ENV: json.dumps(self.settings)}
            proc = await asyncio.create_subprocess_exec(*self._argv(), env=env)
            self.processes[index] = proc
            log_event(log, logging.INFO, "worker.spawned", worker=index + 1, pid=proc.pid)
            code = await proc.wait()
            log_event(log, logging.ERROR, "worker.exited", worker=index + 1, pid=proc.pid, code=code)
            await asyncio.sleep(1.0)  # a worker that dies at once must not spin

    async def stop(self, grace: float) -> None:
        await cancel_and_wait(self._tasks)
        for proc in self.processes:
            if proc is not None and proc.returncode is None:
                proc.terminate()
        for proc in self.processes:
            if proc is None:
                continue
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                proc.kill()
                await proc.wait()
