"""A proxyless gRPC client (grpcio's own xDS support): ``python grpc_xds_probe.py xds:///echo``.

It reads a count per stdin line, makes that many unary calls on one channel (so xDS
updates reach it between lines) and prints a JSON object: answer -> count, errors as
``ERROR <code>``. GRPC_XDS_BOOTSTRAP must name its bootstrap file.
"""

from __future__ import annotations

import json
import sys

import grpc

METHOD = "/xdscp.test.Echo/Who"


def main() -> None:
    channel = grpc.insecure_channel(sys.argv[1])
    call = channel.unary_unary(METHOD)
    for line in sys.stdin:
        counts: dict[str, int] = {}
        for _ in range(int(line)):
            try:
                answer = call(b"", timeout=5).decode()
            except grpc.RpcError as e:
                answer = f"ERROR {e.code().name}"
            counts[answer] = counts.get(answer, 0) + 1
        print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
