"""Real Nacos 2.x/3.x SDKs, each in a venv of its own (the project's dev venv holds
nacos-sdk-python 1.x for the HTTP tests, and one environment cannot hold both), driven
line by line over stdin as an application would call them.

- nacos-sdk-python 3.2 (pure Python, gRPC);
- nacos-sdk-rust-binding-py 0.8 (the Rust nacos-sdk behind a Python binding, gRPC).

Both are given the server as a user gives it, ``host:<HTTP port>``, and find the gRPC
port at + 1000 themselves. Commands (one per line): ``register SERVICE PORT``,
``persistent SERVICE PORT``, ``deregister SERVICE PORT``, ``batch SERVICE PORT,PORT``,
``subscribe SERVICE``, ``list SERVICE``. Each answers ``ok <command>`` or
``error <command> <reason>``; a push prints ``pushed SERVICE <ports, comma-separated>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE = Path.home() / ".cache" / "xdscp"

PYTHON_SDK = r"""
import asyncio, os, sys
from v2.nacos import (ClientConfigBuilder, GRPCConfig, NacosNamingService, RegisterInstanceParam,
                      DeregisterInstanceParam, SubscribeServiceParam, ListInstanceParam)
from v2.nacos.naming.model.naming_param import BatchRegisterInstanceParam
from v2.nacos.common.client_config import TLSConfig

async def main(server, cache, username, password):
    os.makedirs(os.path.join(cache, "naming", "public"), exist_ok=True)  # the SDK's cache files go here
    b = (ClientConfigBuilder().server_address(server).namespace_id("public").log_dir(cache).cache_dir(cache)
         .grpc_config(GRPCConfig(grpc_timeout=5000)))
    if username:
        b = b.username(username).password(password)
    if os.environ.get("SDK_TLS_CA"):  # gRPC over TLS (the SDK presents the client pair it is given)
        b = b.tls_config(TLSConfig(enabled=True, ca_file=os.environ["SDK_TLS_CA"],
                                   cert_file=os.environ["SDK_TLS_CERT"], key_file=os.environ["SDK_TLS_KEY"]))
    naming = await NacosNamingService.create_naming_service(b.build())
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd, service, *rest = line.split()
        try:
            if cmd in ("register", "persistent"):
                await naming.register_instance(RegisterInstanceParam(
                    service_name=service, ip="127.0.0.1", port=int(rest[0]), ephemeral=cmd == "register"))
            elif cmd == "deregister":
                await naming.deregister_instance(DeregisterInstanceParam(
                    service_name=service, ip="127.0.0.1", port=int(rest[0])))
            elif cmd == "batch":
                await naming.batch_register_instances(BatchRegisterInstanceParam(service_name=service, instances=[
                    RegisterInstanceParam(service_name=service, ip="127.0.0.1", port=int(p))
                    for p in rest[0].split(",")]))
            elif cmd == "subscribe":
                async def pushed(instances, service=service):
                    ports = ",".join(str(p) for p in sorted(i.port for i in instances))
                    print("pushed", service, ports, flush=True)
                await naming.subscribe(SubscribeServiceParam(service_name=service, subscribe_callback=pushed))
            elif cmd == "list":
                found = await naming.list_instances(ListInstanceParam(
                    service_name=service, subscribe=False, healthy_only=None))
                print("listed", service, ",".join(str(p) for p in sorted(i.port for i in found)), flush=True)
            print("ok", cmd, flush=True)
        except Exception as e:
            print("error", cmd, repr(e).replace(chr(10), " "), flush=True)
    await naming.shutdown()

asyncio.run(main(*sys.argv[1:5]))
"""

RUST_SDK = r"""
import sys
import nacos_sdk_rust_binding_py as nacos

server, cache, username, password = sys.argv[1:5]
opts = nacos.ClientOptions(server, "public", "xdscp-test", username or None, password or None,
                           naming_load_cache_at_start=False)
naming = nacos.NacosNamingClient(opts)
print("ready", flush=True)
for line in sys.stdin:
    cmd, service, *rest = line.split()
    try:
        if cmd in ("register", "persistent"):
            naming.register_instance(service, "DEFAULT_GROUP", nacos.NacosServiceInstance(
                "127.0.0.1", int(rest[0]), ephemeral=cmd == "register"))
        elif cmd == "deregister":
            naming.deregister_instance(service, "DEFAULT_GROUP", nacos.NacosServiceInstance("127.0.0.1", int(rest[0])))
        elif cmd == "batch":
            naming.batch_register_instance(service, "DEFAULT_GROUP", [
                nacos.NacosServiceInstance("127.0.0.1", int(p)) for p in rest[0].split(",")])
        elif cmd == "list":
            found = naming.get_all_instances(service, "DEFAULT_GROUP", subscribe=False)
            print("listed", service, ",".join(str(p) for p in sorted(i.port for i in found)), flush=True)
        print("ok", cmd, flush=True)
    except Exception as e:
        print("error", cmd, repr(e).replace(chr(10), " "), flush=True)
"""


@dataclass(frozen=True)
class Sdk:
    name: str
    requirement: str
    script: str

    @property
    def venv(self) -> Path:
        return CACHE / self.requirement.replace("==", "-")

    def python(self) -> Path:
        """The venv's python, created and filled from PyPI on first use."""
        python = self.venv / "bin" / "python"
        stamp = self.venv / ".installed"
        if not stamp.exists():
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", self.requirement], check=True,
                           timeout=900)
            stamp.touch()
        return python


PYTHON_3 = Sdk("nacos-sdk-python 3.2", "nacos-sdk-python==3.2.0", PYTHON_SDK)
RUST = Sdk("nacos-sdk-rust-binding-py 0.8", "nacos-sdk-rust-binding-py==0.8.0", RUST_SDK)


class SdkProcess:
    """One SDK client process; ``do`` sends a command and waits for its answer, while a
    reader keeps every push the SDK reports in ``pushes``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pushes: list[tuple[str, list[int]]] = []
        self.listed: list[tuple[str, list[int]]] = []
        self._answers: asyncio.Queue[str] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            parts = raw.decode().split()
            if parts[:1] in (["pushed"], ["listed"]):
                ports = [int(p) for p in parts[2].split(",")] if len(parts) > 2 else []
                (self.pushes if parts[0] == "pushed" else self.listed).append((parts[1], ports))
            elif parts:
                self._answers.put_nowait(" ".join(parts))
        self._answers.put_nowait("exited")

    @classmethod
    async def launch(cls, argv: list[str], cwd: Path, env: dict[str, str]) -> SdkProcess:
        """Start a driver process (``argv``) and wait until it says it is ready."""
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            cwd=str(cwd), env=env)
        client = cls(proc)
        try:
            await client.ready()
        except BaseException:
            await client.close()
            raise
        return client

    async def ready(self, timeout: float = 60) -> None:
        line = await asyncio.wait_for(self._answers.get(), timeout)
        if line != "ready":
            raise RuntimeError(f"the SDK did not start: {line}")

    async def do(self, command: str, timeout: float = 60) -> str:
        """Run ``command``; its answer line (``ok ...`` or ``error ...``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        verb = command.split()[0]
        while True:
            line = await asyncio.wait_for(self._answers.get(), timeout)
            if line.split()[:2] in (["ok", verb], ["error", verb]) or line == "exited":
                return line

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.kill()
        self._reader.cancel()
        # bounded: asyncio's wait also waits for every pipe to report closed; the replica test
        # once hung in teardown with its SDKs already gone, most likely here
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 10)


async def start_sdk(sdk: Sdk, http_port: int | list[int], cache: Path, username: str = "",
                    password: str = "", env: dict[str, str] | None = None) -> SdkProcess:
    """The SDK pointed at ``127.0.0.1:<http_port>`` (several: a server list, as for a Nacos
    cluster), ready for commands. ``cache``: a fresh folder for its disk cache (a stale one
    would hide a push that changes nothing it remembers)."""
    servers = ",".join(f"127.0.0.1:{p}" for p in (http_port if isinstance(http_port, list) else [http_port]))
    python = await asyncio.to_thread(sdk.python)
    cache.mkdir(parents=True, exist_ok=True)
    return await SdkProcess.launch([str(python), "-c", sdk.script, servers, str(cache), username, password],
                                   cwd=cache, env={"HOME": str(cache), "PATH": "/usr/bin:/bin", **(env or {})})
