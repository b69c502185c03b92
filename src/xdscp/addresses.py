"""``host:port`` addresses, as config files, the CLI and the APIs write them."""

from __future__ import annotations


def split_host_port(address: str) -> tuple[str, int]:
    """'127.0.0.1:18000' or '[::1]:18000' -> (host, port); ValueError otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)
