"""The warm worker: a zygote with netplugins and pyroute2 already imported.

Python start-up plus ``import pyroute2`` costs ~150 ms per plugin exec (CRI-CNI-FACTS); a Go
plugin starts in ~2 ms. The zygote pays the imports once, then forks one child per request.
The child is a fresh process, exactly like an exec'd plugin for what matters (it may setns,
its environment and state die with it), so the CNI contract and process isolation for namespace
work are kept. Protocol on a unix stream socket (see :mod:`netplugins.wire`), one request per
connection:

    client -> {"type": "<cni type>", "env": {...}, "stdin": "<base64>"}
    child  -> {"pid": <child pid>}            (so a client can kill it on timeout)
    child  -> {"code": n, "stdout": "<base64>", "stderr": "<base64>"}

Children are forked ahead of need (a small pool blocked in accept(2)), so a request does not
wait for a fork either. The zygote reaps every child that exits, however it ends (answered,
crashed, or killed with its process group by a client on timeout), and forks its replacement,
so the pool never shrinks. The zygote exits when its stdin reaches EOF, i.e. when the process
that started it (and holds the other end of the pipe) is gone, so it never outlives the shim.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import gc
import importlib
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

from netplugins import registry, skel, wire

# What netplugins.delegation imports on first use (an exec'd plugin that delegates nothing never
# pays for them).
_DELEGATION_IMPORTS = ("cnilib.delegate", "cnilib.errors", "cnilib.invoke")


def _preload() -> None:
    """Import and warm up, before forking, everything a child would otherwise pay for itself.

    A child that imports a module or builds a lazily made table pays for it on every request,
    in CPU and in copy-on-write faults, so under load it shows in pods per second: pyroute2
    (via netplugins.netlink) and its message tables, every plugin module, and the cnilib
    modules that delegation imports on first use (cnilib.types' dataclasses alone took ~3 ms
    to build per bridge call).
    """
    from netplugins import netlink

    for module in _DELEGATION_IMPORTS:
        importlib.import_module(module)
    for plugin_type in registry.available_types():
        registry.load_spec(plugin_type)
    netlink.prewarm()


def _handle(conn: socket.socket) -> None:
    """Runs in the forked child: one request, one answer."""
    wire.send_message(conn, {"pid": os.getpid()})
    request = wire.recv_message(conn)
    plugin_type = str(request.get("type", ""))
    env = {str(k): str(v) for k, v in dict(request.get("env") or {}).items()}
    stdin = base64.b64decode(str(request.get("stdin", "")))
    # Mirror an exec'd plugin: its environment is exactly what the runtime passed, which
    # foreign delegates (exec'd from here) inherit.
    os.environ.clear()
    os.environ.update(env)
    if plugin_type not in registry.PLUGIN_MODULES:
        code, out, err = 1, b"", f"unknown plugin type {plugin_type!r}\n".encode()
    else:
        code, out, err = skel.run(registry.load_spec(plugin_type), env, stdin)
    wire.send_message(
        conn,
        {
            "code": code,
            "stdout": base64.b64encode(out).decode(),
            "stderr": base64.b64encode(err).decode(),
        },
    )


def _child(listener: socket.socket, taken_fd: int) -> None:
    """A pre-forked child: wait for one connection, tell the zygote, serve it, exit."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # subprocess must reap its children
    # An idle child dies with the zygote (even on SIGKILL) instead of waiting forever in
    # accept() on a socket nobody connects to any more; cleared once a request is taken.
    _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(0)  # the zygote died before the line above took effect
    code = 0
    conn: socket.socket | None = None
    try:
        conn, _ = listener.accept()
        _set_parent_death_signal(0)
        listener.close()
        # Tell the zygote we are busy: it no longer counts us as idle, so it neither
        # SIGTERMs us on shutdown nor lets the idle pool run dry while we serve.
        os.write(taken_fd, struct.pack("=i", os.getpid()))
        # Own process group: a timed-out request is killed with everything it spawned.
        os.setsid()
        _handle(conn)
    except BaseException:  # the child must never return into the zygote's loop
        code = 1
    finally:
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


PR_SET_PDEATHSIG = 1


def _set_parent_death_signal(signo: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signo, 0, 0, 0)


# Idle and busy children together, at most: a hung plugin holds its child until the runtime's
# timeout kills it, and a flood of those must not fork without bound.
MAX_CHILDREN = 32


class _Pool:
    """The zygote's children: idle ones wait in accept(), busy ones serve one request.

    The pool grows with the load: `size` children are kept idle whatever number is busy
    (up to MAX_CHILDREN in all), so a burst of concurrent pod starts (kubelet starts pods in
    parallel, each running a chain of plugins) finds children waiting instead of queueing
    behind forks or falling back to exec. Busy children exit after their one request and are
    reaped, so the pool shrinks back by itself once the burst is over.
    """

    def __init__(self, listener: socket.socket, taken_w: int, close_in_child: list[int]) -> None:
        self.listener = listener
        self.taken_w = taken_w
        self.close_in_child = close_in_child
        self.idle: set[int] = set()
        self.busy: set[int] = set()

    def fill(self, size: int) -> None:
        while len(self.idle) < max(1, min(size, MAX_CHILDREN - len(self.busy))):
            pid = os.fork()
            if pid == 0:
                # The zygote's signal wake-up pipe is closed below: a signal must not write
                # into whatever file later reuses its descriptor number.
                signal.set_wakeup_fd(-1)
                for fd in self.close_in_child:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                _child(self.listener, self.taken_w)
            self.idle.add(pid)

    def taken(self, data: bytes) -> None:
        for (pid,) in struct.iter_unpack("=i", data):
            if pid in self.idle:  # else it was already reaped
                self.idle.discard(pid)
                self.busy.add(pid)

    def reap(self) -> None:
        """Collect every child that has exited, for whatever reason (no zombie stays)."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.idle.discard(pid)
            self.busy.discard(pid)

    def shutdown(self, grace: float) -> None:
        """SIGTERM the idle children, give busy ones ``grace`` seconds to finish, reap all."""
        for pid in self.idle:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        self.reap()
        while (self.idle or self.busy) and time.monotonic() < deadline:
            time.sleep(0.05)
            self.reap()
        # A busy child still running after the grace period is left to finish its request;
        # it is reparented and reaped by init.


def _read_available(fd: int) -> bytes:
    """Everything in a non-blocking pipe now (writes of <= PIPE_BUF are atomic: whole pids)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def serve(socket_path: str, pool_size: int = 4, shutdown_grace: float = 3.0) -> None:
    """Run the zygote until stdin closes or SIGTERM. Prints ``ready`` when listening.

    ``pool_size`` children are forked ahead of time and block in accept(2) on the shared
    socket, so a request never waits for a fork; each child is replaced once it has exited.
    On the way out, idle children are terminated and busy ones get ``shutdown_grace``
    seconds (less than WarmExecutor.stop waits) to finish before the zygote exits.
    """
    _preload()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)  # only root (our user) may ask us to configure networks
    try:
        listener.bind(socket_path)
    finally:
        os.umask(old_umask)
    listener.listen(128)
    stop = False

    def _on_term(_signo: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    # Signals wake the select() below through this pipe: SIGCHLD (a child exited, reap and
    # replace it) and SIGTERM (stop). Not SIG_IGN for SIGCHLD: the kernel would then reap
    # children itself and we could not tell when one needs replacing.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _signo, _frame: None)
    signal.signal(signal.SIGTERM, _on_term)
    taken_r, taken_w = os.pipe()
    os.set_blocking(taken_r, False)
    stdin_fd = sys.stdin.fileno()
    pool = _Pool(listener, taken_w, [taken_r, stdin_fd, wake_r, wake_w])
    gc.freeze()  # keep the preloaded heap shared (copy-on-write) across forks
    try:
        # The socket listens already: connections made from now on wait in its backlog
        # until the pool below accepts them.
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        # Nobody reads our stdout after "ready": a stray print must not fill the pipe and
        # block a child, so fd 1 becomes /dev/null for the zygote and every child.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        pool.fill(pool_size)
        while not stop:
            # The timeout is a safety net only: SIGCHLD and SIGTERM wake us through wake_r.
            readable, _, _ = select.select([taken_r, stdin_fd, wake_r], [], [], 1.0)
            if stdin_fd in readable and not os.read(stdin_fd, 4096):
                break  # the process that started us is gone
            if wake_r in readable:
                _read_available(wake_r)
            # Busy marks first, then reaping: a child that took a request and died since
            # must end up in neither set.
            pool.taken(_read_available(taken_r))
            pool.reap()
            if not stop:
                pool.fill(pool_size)
    finally:
        pool.taken(_read_available(taken_r))  # a child that just took a request is busy
        # Idle children block in accept(); closing the socket does not wake them, so kill
        # the ones that never took a request (busy ones finish their request and exit).
        pool.shutdown(shutdown_grace)
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
