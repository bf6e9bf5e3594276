"""The streaming server's address: `--streaming-bind-addr` parsed, and the absolute URL
base the RPCs hand out (kubelet 1.36 takes a scheme-less URL for HTTPS, CRI-CONTAINERS.md §4.1).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

WILDCARDS = ("", "0.0.0.0", "::")


class BindAddressError(ValueError):
    pass


def parse_bind_addr(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all addresses) into (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise BindAddressError(f"streaming bind address {value!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise BindAddressError(f"streaming bind address {value!r}: port is not a number") from None
    if not 0 <= port <= 65535:
        raise BindAddressError(f"streaming bind address {value!r}: port out of range")
    if host and host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise BindAddressError(
                f"streaming bind address {value!r}: host must be an IP address"
            ) from None
    return host, port


def advertised_host(bound_host: str, host_addresses: Callable[[], list[str]] | None = None) -> str:
    """The host part for URLs: the bound one, or for a wildcard bind an address of this host
    others can reach (loopback when it has none)."""
    if bound_host not in WILDCARDS:
        return "127.0.0.1" if bound_host == "localhost" else bound_host
    want_v6 = bound_host == "::"
    for address in (host_addresses or _host_addresses)():
        ip = ipaddress.ip_address(address)
        if not ip.is_loopback and not ip.is_link_local and (ip.version == 6) == want_v6:
            return address
    return "::1" if want_v6 else "127.0.0.1"


def base_url(host: str, port: int) -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _host_addresses() -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]
