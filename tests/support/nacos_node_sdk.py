"""npm ``nacos`` 2.6 (nacos-sdk-nodejs, the Node SDK; it speaks the v1 HTTP Open API), in a
node_modules folder of its own, installed from npm on first use and driven over stdin like
tests/nacos_sdk_venv.py's SDKs (commands: ``register SERVICE PORT``, ``deregister SERVICE
PORT``, ``subscribe SERVICE``; answers ``ok <command>`` or ``error <command> <reason>``,
pushes ``pushed SERVICE <ports>``)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from nacos_sdk_venv import SdkProcess

PACKAGE = "nacos@2.6"
PREFIX = Path.home() / ".cache" / "xdscp" / "npm-nacos-2.6"

SCRIPT = r"""
// node -e: process.argv[1] is the first argument
const { NacosNamingClient } = require('nacos');
const readline = require('readline');
const quiet = { info() {}, warn() {}, debug() {}, error() {}, log() {} };
(async () => {
  const client = new NacosNamingClient({ logger: quiet, serverList: process.argv[1], namespace: 'public' });
  await client.ready();
  console.log('ready');
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, service, port] = line.trim().split(/\s+/);
    try {
      if (cmd === 'register') await client.registerInstance(service, { ip: '127.0.0.1', port: Number(port) });
      else if (cmd === 'deregister') await client.deregisterInstance(service, { ip: '127.0.0.1', port: Number(port) });
      else if (cmd === 'subscribe') client.subscribe(service, hosts => {
        console.log('pushed ' + service + ' ' + hosts.map(h => h.port).sort((a, b) => a - b).join(','));
      });
      console.log('ok ' + cmd);
    } catch (e) {
      console.log('error ' + cmd + ' ' + String(e).replace(/\s+/g, ' '));
    }
  }
  process.exit(0);
})();
"""


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def install() -> Path:
    stamp = PREFIX / ".installed"
    if not stamp.exists():
        PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(PREFIX), PACKAGE],
                       check=True, timeout=900)
        stamp.touch()
    return PREFIX


async def start_node_sdk(http_port: int) -> SdkProcess:
    prefix = await asyncio.to_thread(install)
    return await SdkProcess.launch(
        ["node", "-e", SCRIPT, f"127.0.0.1:{http_port}"], cwd=prefix,
        env={"PATH": "/usr/bin:/bin", "NODE_PATH": str(prefix / "node_modules"), "HOME": str(prefix)})
