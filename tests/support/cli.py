"""Running the ``xdscp`` command as an operator does."""

from __future__ import annotations

import asyncio
import sys


async def xdscp_cli(*args: str) -> tuple[int, str]:
    """Run ``python -m xdscp ARGS``; its exit code and output."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "xdscp", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return await proc.wait(), out.decode()
