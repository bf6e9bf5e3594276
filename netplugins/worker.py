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
wait for a fork either. The zygote exits when its stdin reaches EOF, i.e. when the process
that started it (and holds the other end of the pipe) is gone, so it never outlives the shim.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import gc
import os
import select
import signal
import socket
import struct
import sys
from typing import Any

from netplugins import registry, skel, wire


def _preload() -> None:
    """Import every plugin module and pyroute2 (via netplugins.netlink) before forking."""
    import netplugins.netlink  # noqa: F401  (the expensive import we are here to pay once)

    for plugin_type in registry.available_types():
        registry.load_spec(plugin_type)


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
    # An idle child dies with the zygote (even on SIGKILL) instead of waiting forever in
    # accept() on a socket nobody connects to any more; cleared once a request is taken.
    _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(0)  # the zygote died before the line above took effect
    code = 0
    conn: socket.socket | None = None
    try:
        from netplugins import netlink

        netlink.prewarm()
        conn, _ = listener.accept()
        _set_parent_death_signal(0)
        listener.close()
        # Own process group: a timed-out request is killed with everything it spawned.
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # subprocess must reap its children
        try:
            _handle(conn)
        finally:
            # Only now does the zygote fork our replacement: a fork during the request would
            # compete with it for the CPU (the other pool children serve meanwhile).
            os.write(taken_fd, struct.pack("=i", os.getpid()))
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


def _spawn(listener: socket.socket, taken_fd: int, watch_fds: list[int]) -> int:
    pid = os.fork()
    if pid == 0:
        for fd in watch_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        _child(listener, taken_fd)
    return pid


def serve(socket_path: str, pool_size: int = 4) -> None:
    """Run the zygote until stdin closes or SIGTERM. Prints ``ready`` when listening.

    ``pool_size`` children are forked ahead of time and block in accept(2) on the shared
    socket, so a request never waits for a fork; each child tells the zygote through a pipe
    when it is done and is replaced then.
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
    # Children are reaped by the kernel: the client gets their result over the socket.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    stop = False

    def _on_term(_signo: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_term)
    taken_r, taken_w = os.pipe()
    stdin_fd = sys.stdin.fileno()
    idle: set[int] = set()
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
        for _ in range(pool_size):
            idle.add(_spawn(listener, taken_w, [taken_r, stdin_fd]))
        while not stop:
            try:
                readable, _, _ = select.select([taken_r, stdin_fd], [], [], 1.0)
            except InterruptedError:
                continue
            if stdin_fd in readable and not os.read(stdin_fd, 4096):
                break  # the process that started us is gone
            if taken_r in readable:
                data = os.read(taken_r, 4 * 64)  # pipe writes of <= PIPE_BUF are atomic
                for (pid,) in struct.iter_unpack("=i", data):
                    idle.discard(pid)
                    idle.add(_spawn(listener, taken_w, [taken_r, stdin_fd]))
    finally:
        # Idle children block in accept(); closing the socket does not wake them, so kill
        # the ones that never took a request (busy ones finish their request and exit).
        for pid in idle:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
