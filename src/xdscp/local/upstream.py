"""A tiny HTTP upstream that answers with its own name, as the demo's services.

    GET  /             its name
    GET  /health       200 "ok", or 503 once switched to failing
    POST /health/fail  switch /health to failing
    POST /health/ok    switch it back

Run as a program with ``--register``, it registers itself in xdscp's embedded registry
on start (a persistent instance, health-checked by xdscp) and deregisters on SIGTERM or
Ctrl-C, as a real service would.
"""

from __future__ import annotations

import argparse
import signal
import socket
import threading
import time
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from xdscp.local.registration import deregister, register


class NamedUpstream:
    """Answers every path with its name; ``/health`` answers 200, or 503 once failed."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.healthy = True
        self.requests = 0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/health":
                    status, body = (200, b"ok") if upstream.healthy else (503, b"failing")
                else:
                    upstream.requests += 1
                    status, body = 200, upstream.name.encode()
                self._reply(status, body)

            def do_POST(self) -> None:  # noqa: N802
                if self.path in ("/health/fail", "/health/ok"):
                    upstream.healthy = self.path == "/health/ok"
                    self._reply(200, b"failing" if not upstream.healthy else b"ok")
                else:
                    self._reply(404, b"not found")

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"upstream-{name}", daemon=True)

    def start(self) -> NamedUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _advertised_ip(bind_host: str, registry: str) -> str:
    """The address others reach us on: the bind address, or the one that routes to the registry."""
    if bind_host not in ("0.0.0.0", "::"):
        return bind_host
    host, _, port = registry.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, int(port)))  # no packet is sent; this only picks the route
        return str(s.getsockname()[0])


def _register_when_up(registry: str, service: str, ip: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            register(registry, service, ip, port)
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # xdscp may still be starting


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="An HTTP server that answers with its name.")
    p.add_argument("--name", required=True)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--register", metavar="HOST:PORT", help="xdscp's admin address: register there while up")
    p.add_argument("--service", default="echo", help="service name to register as")
    p.add_argument("--advertise", help="IP to register (default: the listening or routed address)")
    args = p.parse_args(argv)
    up = NamedUpstream(args.name, args.host, args.port).start()
    ip = ""
    if args.register:
        ip = args.advertise or _advertised_ip(args.host, args.register)
        _register_when_up(args.register, args.service, ip, args.port, timeout=60)
        print(f"{args.name}: registered {ip}:{args.port} as {args.service} at {args.register}", flush=True)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stopping.wait()
    if args.register:
        try:
            deregister(args.register, args.service, ip, args.port)
            print(f"{args.name}: deregistered", flush=True)
        except (urllib.error.URLError, OSError) as e:
            print(f"{args.name}: could not deregister: {e}", flush=True)
    up.stop()


if __name__ == "__main__":
    main()
