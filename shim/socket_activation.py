"""systemd socket activation: serving the listening socket a service manager hands over.

The protocol (sd_listen_fds(3)): the manager binds and listens itself, starts us with the
sockets as fds 3, 4, ... and sets `LISTEN_FDS` (how many), `LISTEN_PID` (our pid, so that a
child which inherits the environment does not take them too) and optionally `LISTEN_FDNAMES`
(colon-separated names, `FileDescriptorName=` or the socket unit's name). We read the three
variables once, unset them so no child (plugins, the warm worker) sees them, and mark the fds
close-on-exec.

grpcio cannot serve an inherited fd: gRPC core adopts a systemd socket only when built with
libsystemd (grpc/grpc#30485, `--define=use_systemd`), which the PyPI wheels are not, and neither
`add_insecure_port` nor any other Python API takes a listening fd (grpc/grpc#19133). The
alternative of closing the inherited socket and binding a new one at its path would unlink the
socket systemd owns: connections made while cri-shim restarts would be refused instead of
waiting in systemd's backlog, and systemd could no longer start us on demand. So the gRPC server
listens on a private socket in the root directory (mode 0700, root only) and a relay accepts on
the inherited socket and copies bytes both ways, one thread per direction. The inherited socket
stays open and listening in systemd's hands, its file is never removed, and what queues in it
while cri-shim is down is served once it is back. The relay costs one local copy per message,
which is small beside a CRI call's own work; it is used only under socket activation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
ENV_NAMES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
# The gRPC server's own socket under socket activation, inside the root directory.
PRIVATE_SOCKET_NAME = "cri-grpc.sock"
RELAY_BUFFER = 256 * 1024
# How long close() waits for relayed connections the gRPC server did not end by itself.
RELAY_CLOSE_TIMEOUT_S = 5.0


class SocketActivationError(RuntimeError):
    pass


@dataclass(frozen=True)
class InheritedSocket:
    fd: int
    name: str
    sock: socket.socket | None  # None when the fd is not a socket (the manager passed a file)
    # The path a listening AF_UNIX stream socket is bound to, else None.
    unix_path: str | None

    def describe(self) -> str:
        return f"fd {self.fd} ({self.name or 'unnamed'}: {self.unix_path or 'not a unix path'})"


def _unix_path(sock: socket.socket | None) -> str | None:
    if sock is None or sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        return None
    address = sock.getsockname()
    if not isinstance(address, str) or not address:
        return None  # unnamed, or abstract (bytes starting with NUL)
    return address


def take_listen_fds(
    environ: MutableMapping[str, str] | None = None, start: int = SD_LISTEN_FDS_START
) -> list[InheritedSocket]:
    """The sockets passed to this process, like sd_listen_fds(unset_environment=1): the
    variables are removed from `environ` (os.environ) whatever they hold, and the fds become
    close-on-exec. Raises SocketActivationError for malformed variables."""
    env = os.environ if environ is None else environ
    values = {name: env.pop(name, None) for name in ENV_NAMES}
    count_text, pid_text = values["LISTEN_FDS"], values["LISTEN_PID"]
    if count_text is None:
        return []
    if pid_text != str(os.getpid()):
        # Meant for another process (our parent, before it exec'd us under a new pid).
        log.warning("LISTEN_FDS=%s is for pid %s, not this one: ignored", count_text, pid_text)
        return []
    try:
        count = int(count_text)
    except ValueError as err:
        raise SocketActivationError(f"LISTEN_FDS={count_text!r} is not a number") from err
    if count < 0:
        raise SocketActivationError(f"LISTEN_FDS={count} is negative")
    names = (values["LISTEN_FDNAMES"] or "").split(":") if values["LISTEN_FDNAMES"] else []
    if names and len(names) != count:
        raise SocketActivationError(
            f"LISTEN_FDNAMES names {len(names)} sockets but LISTEN_FDS={count}"
        )
    inherited = []
    for index, fd in enumerate(range(start, start + count)):
        try:
            os.set_inheritable(fd, False)
        except OSError as err:
            raise SocketActivationError(f"LISTEN_FDS={count}: fd {fd} is not open") from err
        try:
            sock: socket.socket | None = socket.socket(fileno=fd)
        except OSError:
            sock = None
        name = names[index] if names else ""
        inherited.append(InheritedSocket(fd, name, sock, _unix_path(sock)))
    return inherited


def select_listener(inherited: list[InheritedSocket], socket_path: str) -> socket.socket | None:
    """The inherited listening unix socket bound to `socket_path` (the endpoint's path: the
    socket unit's ListenStream=), or None when nothing was inherited. Sockets not chosen are
    closed. Raises SocketActivationError when sockets were passed but none is bound there."""
    if not inherited:
        return None
    wanted = os.path.realpath(socket_path)
    chosen = None
    for item in inherited:
        path = item.unix_path
        if chosen is None and path is not None and os.path.realpath(path) == wanted:
            chosen = item
    passed = ", ".join(item.describe() for item in inherited)
    for item in inherited:
        if item is not chosen:
            _close(item)
    if chosen is None or chosen.sock is None:
        raise SocketActivationError(
            f"socket activation passed {passed}, none a unix stream socket bound to"
            f" {socket_path}: --container-runtime-endpoint must name the socket unit's path"
        )
    log.info("socket activation: serving %s", chosen.describe())
    return chosen.sock


def _close(item: InheritedSocket) -> None:
    if item.sock is not None:
        item.sock.close()
    else:
        with contextlib.suppress(OSError):
            os.close(item.fd)


class SocketRelay:
    """Accepts on the inherited socket and joins each connection to the gRPC server's private
    socket. Owns its threads and connections; close() is idempotent."""

    def __init__(self, listener: socket.socket, target_path: str) -> None:
        self._listener = listener
        self._target_path = target_path
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._pumps: set[threading.Thread] = set()
        self._accepting = True
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="activation-relay", daemon=True
        )
        self._closed = False

    def start(self) -> None:
        self._accept_thread.start()

    def stop_accepting(self) -> None:
        """New connections now wait in the inherited socket's backlog (for a successor)."""
        with self._lock:
            self._accepting = False
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")
        if self._accept_thread.is_alive():
            self._accept_thread.join()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop_accepting()
        with self._lock:
            pumps = list(self._pumps)
        for pump in pumps:
            pump.join(RELAY_CLOSE_TIMEOUT_S / max(1, len(pumps)))
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            pumps = list(self._pumps)
        for pump in pumps:
            pump.join()
        # Our copy only: systemd keeps its own, still listening. Never shutdown() it, which
        # would act on the socket systemd shares with us.
        self._listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _accept_loop(self) -> None:
        poller = select.poll()
        poller.register(self._listener.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            with self._lock:
                if not self._accepting:
                    return
            if self._listener.fileno() not in ready:
                continue
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                continue  # the socket may be non-blocking; someone else took the connection
            except OSError as err:
                log.error("socket activation relay: accept failed: %s", err)
                continue
            self._join(client)

    def _join(self, client: socket.socket) -> None:
        client.setblocking(True)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self._target_path)
        except OSError as err:
            log.error("socket activation relay: cannot reach %s: %s", self._target_path, err)
            upstream.close()
            client.close()
            return
        pair = _Pair(client, upstream)
        with self._lock:
            self._connections.update((client, upstream))
            for src, dst, name in ((client, upstream, "in"), (upstream, client, "out")):
                pump = threading.Thread(
                    target=self._pump, args=(pair, src, dst), name=f"relay-{name}", daemon=True
                )
                self._pumps.add(pump)
                pump.start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        buffer = bytearray(RELAY_BUFFER)
        view = memoryview(buffer)
        try:
            while True:
                n = src.recv_into(buffer)
                if n == 0:
                    break
                dst.sendall(view[:n])
        except OSError:
            pass  # the other side went away: end this direction
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)  # pass the end-of-stream on
            if pair.one_direction_done():
                with self._lock:
                    self._connections.difference_update((pair.client, pair.upstream))
                pair.client.close()
                pair.upstream.close()
            with self._lock:
                self._pumps.discard(threading.current_thread())


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._lock = threading.Lock()
        self._done = 0

    def one_direction_done(self) -> bool:
        """True for the second direction to finish: then both sockets may be closed."""
        with self._lock:
            self._done += 1
            return self._done == 2
