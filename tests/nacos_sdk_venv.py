"""The real nacos-sdk-python 3.x client, in a venv of its own (the project's dev venv holds
1.x for the HTTP tests, and one environment cannot hold both), driving a test server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

SDK = "nacos-sdk-python==3.2.0"
VENV = Path.home() / ".cache" / "xdscp" / "nacos-sdk-3.2.0"

# Subscribes to a service, then registers one ephemeral instance in it over gRPC; prints
# "registered", then the ports of the first push (a NotifySubscriberRequest) that holds
# that instance, and exits (closing its connection) when stdin closes.
SCRIPT = r"""
import asyncio, os, sys
from v2.nacos import (ClientConfigBuilder, GRPCConfig, NacosNamingService, RegisterInstanceParam,
                      SubscribeServiceParam)

async def main(grpc_port, service, port, cache):
    os.makedirs(os.path.join(cache, "naming", "public"), exist_ok=True)  # the SDK's cache files go here
    cfg = (ClientConfigBuilder().server_address(f"127.0.0.1:{grpc_port - 1000}").namespace_id("public")
           .log_dir(cache).cache_dir(cache).grpc_config(GRPCConfig(grpc_timeout=5000)).build())
    naming = await NacosNamingService.create_naming_service(cfg)
    seen = asyncio.Event()

    async def pushed(instances):
        ports = sorted(i.port for i in instances)
        if port in ports and not seen.is_set():
            print("pushed", ports, flush=True)
            seen.set()

    await naming.subscribe(SubscribeServiceParam(service_name=service, subscribe_callback=pushed))
    await naming.register_instance(RegisterInstanceParam(service_name=service, ip="127.0.0.1", port=port))
    print("registered", flush=True)
    await asyncio.wait_for(seen.wait(), 15)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await naming.shutdown()

asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]))
"""


def sdk_python() -> Path:
    """The venv's python, created and filled from PyPI on first use."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", SDK], check=True, timeout=900)
        stamp.touch()
    return python


async def run_sdk_script(grpc_port: int, service: str, port: int, cache: Path) -> asyncio.subprocess.Process:
    """The SDK script against a server's gRPC port; ``cache``: a fresh folder for the SDK's
    disk cache (a stale one would hide a push that changes nothing it remembers)."""
    python = await asyncio.to_thread(sdk_python)
    return await asyncio.create_subprocess_exec(
        str(python), "-c", SCRIPT, str(grpc_port), service, str(port), str(cache),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
