"""One cri-shim per root directory and socket.

A second shim on the same root would run its start-up GC against the first one's pods (their
addresses could be handed out twice) and take over the socket. So the process holds an
exclusive `flock` on `<root>/cri-shim.lock` for its whole life (the kernel drops it when the
process dies, even by SIGKILL, so a crash never leaves a stale lock), refuses to start when
the lock is held or the socket already answers, and on exit removes only the socket it made.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket


class AlreadyRunningError(RuntimeError):
    pass


class RootLock:
    def __init__(self, root_directory: str) -> None:
        self.path = os.path.join(root_directory, "cri-shim.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AlreadyRunningError(
                    f"another cri-shim holds {self.path}: one cri-shim per root directory"
                ) from err
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def socket_answers(path: str) -> bool:
    """True when something accepts connections on the unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def socket_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def remove_own_socket(path: str, identity: tuple[int, int] | None) -> None:
    """Unlink the socket only if it is still the one this process created."""
    if identity is not None and socket_identity(path) == identity:
        os.unlink(path)
