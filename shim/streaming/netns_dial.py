"""TCP connections to a port inside a pod's network namespace, made by cri-shim itself.

A socket belongs to the network namespace its creating thread was in; after that it can be
used from any thread. So one dedicated thread enters the pinned namespace with setns(2) (through
ctypes: os.setns needs Python 3.12), creates the socket, and goes back to the host namespace;
the caller then connects it. cri-dockerd instead spawns `nsenter … socat` per connection
(CRI-CONTAINERS.md §4.4). No other thread of the shim ever changes namespace, and the worker
thread is retired (never reused) if it cannot get back to the host namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import queue
import socket
import threading
from concurrent.futures import Future

_CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]

CONNECT_TIMEOUT = 10.0


class DialError(OSError):
    pass


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise DialError(code, f"failed to enter network namespace {what}: {os.strerror(code)}")


_Job = tuple[str, int, "Future[socket.socket]"]


class NetnsSocketFactory:
    """Hands out sockets created in a given network namespace, from one worker thread."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def socket_in(self, netns_path: str, family: int = socket.AF_INET) -> socket.socket:
        future: Future[socket.socket] = Future()
        with self._lock:
            if self._closed:
                raise DialError(errno.ESHUTDOWN, "the streaming server is shutting down")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="netns-sockets", daemon=True
                )
                self._thread.start()
            self._jobs.put((netns_path, family, future))
        return future.result(timeout=CONNECT_TIMEOUT)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            self._jobs.put(None)
        if thread is not None:
            thread.join(timeout=5)

    def _work(self) -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                netns_path, family, future = job
                try:
                    sock = _socket_in(home, netns_path, family)
                except _StrandedError as err:
                    future.set_exception(DialError(errno.EIO, str(err)))
                    return  # retired: the next request starts a fresh worker
                except OSError as err:
                    future.set_exception(err)
                    continue
                future.set_result(sock)
        finally:
            os.close(home)


class _StrandedError(Exception):
    """The worker could not return to the host's namespace."""


def _socket_in(home: int, netns_path: str, family: int) -> socket.socket:
    try:
        target = os.open(netns_path, os.O_RDONLY)
    except OSError as err:
        raise DialError(
            err.errno, f"failed to open network namespace {netns_path}: {err.strerror}"
        ) from err
    try:
        _setns(target, netns_path)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            # Back home before anything else: a thread left in a pod's namespace must never
            # serve another request.
            if _libc.setns(home, _CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise _StrandedError(
                    f"failed to return to the host network namespace: {os.strerror(code)}"
                )
    finally:
        os.close(target)


def dial(factory: NetnsSocketFactory, netns_path: str, port: int) -> socket.socket:
    """A connected socket to `port` on the pod's loopback (or the host's, for "")."""
    errors: list[str] = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = factory.socket_in(netns_path, family) if netns_path else socket.socket(family)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect((host, port))
        except OSError as err:
            sock.close()
            errors.append(f"{host}: {err.strerror or err}")
            continue
        sock.settimeout(None)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    where = f"in network namespace {netns_path}" if netns_path else "on the host"
    raise DialError(
        errno.ECONNREFUSED, f"failed to connect to localhost:{port} {where}: {'; '.join(errors)}"
    )
