"""`--metrics-address`: host:port, checked when the flags are parsed."""

from __future__ import annotations


def split_address(address: str) -> tuple[str, int]:
    """`127.0.0.1:9099` or `[::1]:9099` → (host, port); ValueError naming what is wrong."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"metrics address {address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(
            f"metrics address {address!r}: port {port_text!r} is not a number"
        ) from None
    if not 0 < port < 65536:
        raise ValueError(f"metrics address {address!r}: port {port} is out of range")
    return host, port
