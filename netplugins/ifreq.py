"""Link flags and IPv4 address of an interface through ioctl(2), without netlink.

loopback only needs "is lo up, bring it up, what are its addresses": three ioctls cost
microseconds, where a pyroute2 socket costs milliseconds (and its import ~150 ms in a cold
process). Call these inside :func:`netplugins.nsenter.entered`: the socket made here belongs to
the namespace the thread is in at that moment.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

from netplugins.errors import NetlinkFailure

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
_IFREQ = struct.Struct("16sh22x")  # struct ifreq: name, then a 24-byte union (flags first)


def _ioctl(request: int, name: str, flags: int = 0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            return fcntl.ioctl(sock, request, _IFREQ.pack(name.encode(), flags))
        except OSError as exc:
            raise NetlinkFailure(f"failed to query or change link {name}", str(exc)) from exc


def get_flags(name: str) -> int:
    flags: int = _IFREQ.unpack(_ioctl(SIOCGIFFLAGS, name))[1]
    return flags & 0xFFFF


def set_flags(name: str, flags: int) -> None:
    _ioctl(SIOCSIFFLAGS, name, flags)


def ipv4_address(name: str) -> str | None:
    """The interface's primary IPv4 address as ``a.b.c.d/len``, None when it has none."""
    try:
        addr = _ioctl(SIOCGIFADDR, name)[20:24]
        mask = _ioctl(SIOCGIFNETMASK, name)[20:24]
    except NetlinkFailure:
        return None
    return str(ipaddress.ip_interface(f"{socket.inet_ntoa(addr)}/{socket.inet_ntoa(mask)}"))


def ipv6_addresses(name: str) -> list[str]:
    """From /proc/net/if_inet6, which shows the namespace the calling thread is in."""
    out = []
    try:
        with open("/proc/net/if_inet6") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) == 6 and fields[5] == name:
                    ip = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
                    out.append(f"{ip}/{int(fields[2], 16)}")
    except FileNotFoundError:  # IPv6 disabled
        return []
    return out
