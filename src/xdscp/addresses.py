"""``host:port`` addresses, as config files, the CLI and the APIs write them."""

from __future__ import annotations


def split_host_port(address: str) -> tuple[str, int]:
    """'127.0.0.1:18000' or '[::1]:18000' -> (host, port); ValueError saying what is wrong otherwise.

    Port 0 is accepted: it asks the system for a free port (tests and ``--admin-address``)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host.strip("[]"):
        raise ValueError(f"{address!r} is not host:port")
    if not port.isdigit():
        raise ValueError(f"{address!r}: the port {port!r} is not a number")
    if int(port) > 65535:
        raise ValueError(f"{address!r}: the port {int(port)} is out of range (0-65535)")
    return host.strip("[]"), int(port)
