"""Entering network namespaces and per-namespace sysctls, without pyroute2.

A plugin is a short-lived separate process (or a forked child of the warm worker), so it may
switch its own network namespace: :func:`entered` does ``setns(2)`` and always returns to the
namespace it came from. Kept apart from :mod:`netplugins.netlink` so that code paths which need
no netlink (loopback's ioctl fast path, sysctls) do not pay for importing pyroute2.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

from netplugins.errors import NetlinkFailure, NetPluginError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceGone(NetPluginError):
    """The network namespace path does not exist (any more)."""


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetlinkFailure(f"failed to enter network namespace {what}", os.strerror(err))


@contextlib.contextmanager
def entered(netns_path: str) -> Iterator[None]:
    """Run the body inside ``netns_path``; always return to the original namespace."""
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NamespaceGone(f"failed to open network namespace {netns_path}", str(exc)) from exc
    origin = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target, netns_path)
        try:
            yield
        finally:
            _setns(origin, "of origin")
    finally:
        os.close(target)
        os.close(origin)


def netns_exists(netns_path: str) -> bool:
    return bool(netns_path) and os.path.exists(netns_path)


def sysctl_path(name: str) -> str:
    """The /proc/sys file of ``name``, with sysctl(8)'s two spellings.

    ``net.ipv4.ip_forward``: every dot separates components. ``net/ipv4/conf/eth0.100/x``:
    slashes separate them and dots are kept, the only spelling that can name an interface
    with a dot in it (VLAN devices, ``br.100``); :func:`iface_sysctl` builds it.
    """
    return "/proc/sys/" + (name.lstrip("/") if "/" in name else name.replace(".", "/"))


def iface_sysctl(family: str, ifname: str, key: str) -> str:
    """``net/<family>/conf/<ifname>/<key>``: the interface name keeps its dots."""
    return f"net/{family}/conf/{ifname}/{key}"


def write_sysctl(name: str, value: str, netns_path: str = "") -> None:
    """Write a sysctl (see :func:`sysctl_path`), inside ``netns_path`` when given."""
    path = sysctl_path(name)

    def _write() -> None:
        with open(path, "w") as fh:
            fh.write(value)

    try:
        if netns_path:
            with entered(netns_path):
                _write()
        else:
            _write()
    except OSError as exc:
        raise NetlinkFailure(f"failed to set sysctl {name}={value}", str(exc)) from exc


def write_sysctls_best_effort(values: dict[str, str], netns_path: str = "") -> None:
    """Write several sysctls with one namespace switch, ignoring the ones that fail.

    For knobs the reference sets and ignores errors of (arp_notify, accept_dad ...): a
    kernel without IPv6 must not fail an IPv4 ADD.
    """

    def _write_all() -> None:
        for name, value in values.items():
            with (
                contextlib.suppress(OSError),
                open(sysctl_path(name), "w") as fh,
            ):
                fh.write(value)

    if not values:
        return
    if netns_path:
        with entered(netns_path):
            _write_all()
    else:
        _write_all()


def read_sysctl(name: str, netns_path: str = "") -> str:
    path = sysctl_path(name)
    if netns_path:
        with entered(netns_path), open(path) as fh:
            return fh.read().strip()
    with open(path) as fh:
        return fh.read().strip()
