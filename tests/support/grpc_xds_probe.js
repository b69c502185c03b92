// A proxyless gRPC client in Node (@grpc/grpc-js-xds): `node grpc_xds_probe.js xds:///echo`.
// Same protocol as grpc_xds_probe.py: a count per stdin line, a JSON object of answers back.
// NODE_PATH must hold @grpc/grpc-js and @grpc/grpc-js-xds; GRPC_XDS_BOOTSTRAP names the bootstrap.
"use strict";
const grpc = require("@grpc/grpc-js");
require("@grpc/grpc-js-xds").register();
const readline = require("readline");

const client = new grpc.Client(process.argv[2], grpc.credentials.createInsecure());
const identity = (b) => b;

function call() {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 5000);
    client.makeUnaryRequest("/xdscp.test.Echo/Who", identity, identity, Buffer.alloc(0), { deadline },
      (err, value) => resolve(err ? `ERROR ${grpc.status[err.code]}` : value.toString()));
  });
}

const lines = readline.createInterface({ input: process.stdin });
const queue = [];
let busy = false;
async function drain() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const n = queue.shift();
    const counts = {};
    for (let i = 0; i < n; i++) {
      const answer = await call();
      counts[answer] = (counts[answer] || 0) + 1;
    }
    process.stdout.write(JSON.stringify(counts) + "\n");
  }
  busy = false;
}
lines.on("line", (line) => { queue.push(parseInt(line, 10)); drain(); });
lines.on("close", () => { const wait = setInterval(() => { if (!busy) { clearInterval(wait); process.exit(0); } }, 10); });
