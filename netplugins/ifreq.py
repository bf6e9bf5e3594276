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
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
_IFREQ = struct.Struct("16sh22x")  # struct ifreq: name, then a 24-byte union (flags first)
_IFREQ_INT = struct.Struct("16si20x")  # the union read as an int (ifindex, mtu)


def _ioctl(request: int, name: str, flags: int = 0, sock: socket.socket | None = None) -> bytes:
    """One ifreq ioctl; ``sock`` decides the namespace (a new one: the thread's current)."""
    own = sock is None
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if sock is None else sock
    try:
        return fcntl.ioctl(s, request, _IFREQ.pack(name.encode(), flags))
    except OSError as exc:
        raise NetlinkFailure(f"failed to query or change link {name}", str(exc)) from exc
    finally:
        if own:
            s.close()


def get_flags(name: str, sock: socket.socket | None = None) -> int:
    flags: int = _IFREQ.unpack(_ioctl(SIOCGIFFLAGS, name, sock=sock))[1]
    return flags & 0xFFFF


def set_flags(name: str, flags: int) -> None:
    _ioctl(SIOCSIFFLAGS, name, flags)


def get_index(name: str, sock: socket.socket | None = None) -> int | None:
    """The ifindex of ``name``; None when there is no such link."""
    try:
        value: int = _IFREQ_INT.unpack(_ioctl(SIOCGIFINDEX, name, sock=sock))[1]
    except NetlinkFailure:
        return None
    return value


def get_mac(name: str, sock: socket.socket | None = None) -> str:
    raw = _ioctl(SIOCGIFHWADDR, name, sock=sock)[18:24]  # sockaddr: family (2), then bytes
    return ":".join(f"{b:02x}" for b in raw)


def get_mtu(name: str, sock: socket.socket | None = None) -> int:
    value: int = _IFREQ_INT.unpack(_ioctl(SIOCGIFMTU, name, sock=sock))[1]
    return value


def ipv4_address(name: str, sock: socket.socket | None = None) -> str | None:
    """The interface's primary IPv4 address as ``a.b.c.d/len``, None when it has none."""
    try:
        addr = _ioctl(SIOCGIFADDR, name, sock=sock)[20:24]
        mask = _ioctl(SIOCGIFNETMASK, name, sock=sock)[20:24]
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


def ipv4_route_device(ip: str) -> str:
    """The interface of the main table's longest-prefix route to ``ip`` ("" if none).

    Read from /proc/net/route (the calling thread's namespace): enough for portmap's
    route_localnet decision, and free of the pyroute2 import a cold plugin would pay.
    """
    target = int(ipaddress.IPv4Address(ip))
    best_len, best_dev = -1, ""
    try:
        with open("/proc/net/route") as fh:
            next(fh, None)  # header
            for line in fh:
                fields = line.split()
                if len(fields) < 8:
                    continue
                # Columns are little-endian hex: Iface Destination Gateway Flags ... Mask.
                dest = int.from_bytes(bytes.fromhex(fields[1]), "little")
                mask = int.from_bytes(bytes.fromhex(fields[7]), "little")
                if target & mask == dest and mask.bit_count() > best_len:
                    best_len, best_dev = mask.bit_count(), fields[0]
    except OSError:
        return ""
    return best_dev
