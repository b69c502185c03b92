"""A tiny HTTP upstream that answers with its own name, with a health endpoint to flip."""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


def main() -> None:
    p = argparse.ArgumentParser(description="An HTTP server that answers with its name.")
    p.add_argument("--name", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    up = NamedUpstream(args.name, args.host, args.port)
    up._server.serve_forever()


if __name__ == "__main__":
    main()
