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


def write_sysctl(name: str, value: str, netns_path: str = "") -> None:
    """Write ``net.x.y`` style sysctl, inside ``netns_path`` when given (per-netns /proc/sys)."""
    path = "/proc/sys/" + name.replace(".", "/")

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
                open("/proc/sys/" + name.replace(".", "/"), "w") as fh,
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
    path = "/proc/sys/" + name.replace(".", "/")
    if netns_path:
        with entered(netns_path), open(path) as fh:
            return fh.read().strip()
    with open(path) as fh:
        return fh.read().strip()
