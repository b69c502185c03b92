"""Start, restart and stop the follower worker processes of one xdscp."""

from __future__ import annotations

import asyncio
import logging
import sys

from xdscp.background import cancel_and_wait
from xdscp.logfmt import log_event

log = logging.getLogger(__name__)


class WorkerPool:
    """``count`` follower processes (``xdscp worker``), each restarted if it dies."""

    def __init__(self, count: int, upstream: str, xds_address: str, node_group_by: str = "cluster") -> None:
        self.count = count
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
            proc = await asyncio.create_subprocess_exec(*self._argv())
            self.processes[index] = proc
            log_event(log, logging.INFO, "worker.spawned", worker=index + 1, pid=proc.pid)
            code = await proc.wait()
            log_event(log, logging.ERROR, "worker.exited", worker=index + 1, pid=proc.pid, code=code)
            await asyncio.sleep(1.0)  # a worker that dies at once must not spin

    async def stop(self, grace: float = 5.0) -> None:
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
