"""Free loopback ports."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port_pair(offset: int, host: str = "127.0.0.1") -> int:
    """A free port P such that P + ``offset`` is free too (Nacos' HTTP and gRPC ports)."""
    for _ in range(100):
        port = free_port(host)
        if port + offset > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port + offset))
            except OSError:
                continue
        return port
    raise OSError(f"no free port pair {offset} apart on {host}")
