"""Pinning a sandbox's network namespace with a bind mount.

`/proc/<pid>/ns/net` is only valid while that pid is the infra container's: after the container
dies the pid can be reused, and a CNI DEL given that path would tear down a stranger's network.
A bind mount of the namespace file keeps the namespace itself (not the pid) reachable until we
unmount it, and is gone after a reboot, which `is_pinned` detects so DEL gets an empty netns.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os

_MS_BIND = 4096
_MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class NetnsPinError(OSError):
    pass


def pin(pid: int, target: str) -> None:
    """Bind-mount the network namespace of `pid` onto `target` (a file it creates)."""
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    source = f"/proc/{pid}/ns/net"
    with open(target, "a"):
        pass
    if _libc.mount(source.encode(), target.encode(), None, _MS_BIND, None) != 0:
        code = ctypes.get_errno()
        os.unlink(target)
        raise NetnsPinError(
            code, f"failed to pin network namespace {source} at {target}: {os.strerror(code)}"
        )


def unpin(target: str) -> None:
    """Unmount and remove a pinned namespace; a path that is not there is fine."""
    if is_pinned(target) and _libc.umount2(target.encode(), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise NetnsPinError(
                code, f"failed to unpin network namespace {target}: {os.strerror(code)}"
            )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)


def is_pinned(target: str) -> bool:
    """True while `target` is a live bind mount of a namespace (not after a reboot)."""
    try:
        return os.path.ismount(target)
    except OSError:
        return False


def same_namespace(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
