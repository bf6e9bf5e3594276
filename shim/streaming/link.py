"""The client's connection after the upgrade, as the sessions use it: bytes in from one
reader thread, bytes out from any thread under one lock.

Slow or silent peers cannot hold a thread forever: a write that makes no progress for
SEND_TIMEOUT fails (the session then ends), and once the session has finished, the reader
waits at most LINGER for the peer to hang up before the connection is dropped.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

READ_SIZE = 64 * 1024
SEND_TIMEOUT = 30.0
LINGER = 5.0
_TICK_MS = 500


class SocketLink:
    def __init__(self, sock: socket.socket, already_read: bytes = b"") -> None:
        self.sock = sock
        self._pending = already_read
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._finish_by: float | None = None
        sock.settimeout(SEND_TIMEOUT)  # bounds sendall; recv is only called when readable
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)

    def recv(self) -> bytes:
        """The next bytes from the peer; b"" once it hung up, failed, or we are closing."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        while not self._closed.is_set():
            if self._finish_by is not None and time.monotonic() > self._finish_by:
                return b""
            try:
                ready = self._poll.poll(_TICK_MS)
            except OSError:
                return b""
            if not ready:
                continue
            try:
                return self.sock.recv(READ_SIZE)
            except (BlockingIOError, TimeoutError):
                continue
            except OSError:
                return b""
        return b""

    def sendall(self, data: bytes) -> None:
        """Raises OSError when the peer is gone or does not read."""
        with self._send_lock:
            if self._closed.is_set():
                raise ConnectionAbortedError("the streaming connection is closed")
            self.sock.sendall(data)

    def finish_soon(self) -> None:
        """We have said everything: let the peer hang up, but not take its time about it."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        self.expire_at(time.monotonic() + LINGER)

    def expire_at(self, deadline: float | None) -> None:
        """From `deadline` on (a `time.monotonic()`), `recv` returns b"" as if the peer had
        hung up; None lifts it."""
        self._finish_by = deadline

    def close(self) -> None:
        """Idempotent; wakes a blocked `recv` (it returns b"")."""
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()
