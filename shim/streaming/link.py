"""The client's connection after the upgrade, as the sessions use it: bytes in from one
reader thread, bytes out from any thread under one lock.

Slow or silent peers cannot hold a thread forever: a write that makes no progress for
SEND_TIMEOUT fails (the session then ends), and once the session has finished, the reader
waits at most LINGER for the peer to hang up before the connection is dropped.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

READ_SIZE = 256 * 1024
SEND_TIMEOUT = 30.0
LINGER = 5.0
# How often a reader blocked on an idle peer, or a writer on a full one, wakes to look at its
# deadlines.
RECV_TICK = 0.5
SEND_TICK = 1.0


def set_io_timeouts(sock: socket.socket, send: float = SEND_TICK, recv: float = RECV_TICK) -> None:
    """A blocking socket whose send and recv return EAGAIN after `send` or `recv` seconds
    without progress (SO_SNDTIMEO/SO_RCVTIMEO), so their callers can look at deadlines. Unlike
    Python's socket timeouts, which poll() before every call, this costs one syscall per recv
    or send on the bulk paths (port-forward throughput)."""
    sock.settimeout(None)
    for option, seconds in ((socket.SO_SNDTIMEO, send), (socket.SO_RCVTIMEO, recv)):
        whole = int(seconds)
        sock.setsockopt(
            socket.SOL_SOCKET, option, struct.pack("ll", whole, int((seconds - whole) * 1e6))
        )


def send_within(sock: socket.socket, data: bytes, timeout: float = SEND_TIMEOUT) -> None:
    """sendall on a socket of `set_io_timeouts`, failing (TimeoutError) when the whole write
    takes longer than `timeout`: a peer that reads a trickle, or whose kernel keeps growing our
    send buffer, cannot hold the writer for ever."""
    deadline = time.monotonic() + timeout
    view = memoryview(data)
    while view:
        with contextlib.suppress(BlockingIOError, InterruptedError):  # a tick without room
            view = view[sock.send(view) :]
        if view and time.monotonic() > deadline:
            raise TimeoutError(f"the peer took no {len(view)} more bytes in {timeout:g} s")


class SocketLink:
    def __init__(self, sock: socket.socket, already_read: bytes = b"") -> None:
        self.sock = sock
        self._pending = already_read
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._finish_by: float | None = None
        set_io_timeouts(sock)

    def recv(self) -> bytes:
        """The next bytes from the peer; b"" once it hung up, failed, or we are closing."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        while not self._closed.is_set():
            if self._finish_by is not None and time.monotonic() > self._finish_by:
                return b""
            try:
                return self.sock.recv(READ_SIZE)
            except (BlockingIOError, TimeoutError, InterruptedError):
                continue  # idle for a tick: look at the deadlines again
            except OSError:
                return b""
        return b""

    def sendall(self, data: bytes) -> None:
        """Raises OSError when the peer is gone or has not read for SEND_TIMEOUT."""
        with self._send_lock:
            if self._closed.is_set():
                raise ConnectionAbortedError("the streaming connection is closed")
            send_within(self.sock, data)

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
