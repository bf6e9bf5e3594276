"""The sd_listen_fds protocol as cri-shim reads it, and the relay from the inherited socket
to the gRPC server's private one, on real unix sockets in a temporary directory."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator

import pytest

from shim.socket_activation import (
    SocketActivationError,
    SocketRelay,
    select_listener,
    take_listen_fds,
)


@pytest.fixture
def workdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="crishim-sa-") as d:
        yield d


def _listening(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    return sock


def _env(count: int, pid: int | None = None, names: str | None = None) -> dict[str, str]:
    env = {"LISTEN_FDS": str(count), "LISTEN_PID": str(pid or os.getpid()), "OTHER": "kept"}
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    return env


def test_nothing_passed() -> None:
    env = {"LISTEN_FDNAMES": "stale", "OTHER": "kept"}
    assert take_listen_fds(env) == []
    assert env == {"OTHER": "kept"}


def test_fds_meant_for_another_pid_are_ignored_and_unset() -> None:
    env = _env(1, pid=os.getpid() + 100000, names="x")
    assert take_listen_fds(env) == []
    assert env == {"OTHER": "kept"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LISTEN_FDS": "two", "LISTEN_PID": str(os.getpid())}, "LISTEN_FDS='two' is not a number"),
        ({"LISTEN_FDS": "-1", "LISTEN_PID": str(os.getpid())}, "LISTEN_FDS=-1 is negative"),
        (
            {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": "a:b"},
            "LISTEN_FDNAMES names 2 sockets but LISTEN_FDS=1",
        ),
    ],
)
def test_malformed_variables_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SocketActivationError, match=message):
        take_listen_fds(env)
    assert not any(name.startswith("LISTEN_") for name in env)


def test_closed_fd_is_refused(workdir: str) -> None:
    fd = os.open(workdir, os.O_RDONLY)
    os.close(fd)  # a number that is surely not open now
    with pytest.raises(SocketActivationError, match=f"fd {fd} is not open"):
        take_listen_fds(_env(1), start=fd)


def test_inherited_socket_is_chosen_by_its_path(workdir: str) -> None:
    path = os.path.join(workdir, "cri.sock")
    sock = _listening(path)
    sock.set_inheritable(True)  # as systemd passes it
    fd = sock.detach()
    env = _env(1, names="cri-shim.socket")
    inherited = take_listen_fds(env, start=fd)
    assert env == {"OTHER": "kept"}
    assert [(i.fd, i.name, i.unix_path) for i in inherited] == [(fd, "cri-shim.socket", path)]
    assert not os.get_inheritable(fd), "children would inherit the CRI socket"
    listener = select_listener(inherited, path)
    assert listener is not None and listener.fileno() == fd
    listener.close()
    assert os.path.exists(path)


def test_no_socket_at_the_endpoint_path_is_refused(workdir: str) -> None:
    sock = _listening(os.path.join(workdir, "other.sock"))
    fd = sock.detach()
    inherited = take_listen_fds(_env(1, names="other.socket"), start=fd)
    wanted = os.path.join(workdir, "cri.sock")
    with pytest.raises(SocketActivationError) as err:
        select_listener(inherited, wanted)
    assert f"none a unix stream socket bound to {wanted}" in str(err.value)
    assert "other.socket" in str(err.value) and "other.sock" in str(err.value)
    with pytest.raises(OSError):
        os.fstat(fd)  # not chosen: closed, not leaked


def _echo_server(path: str) -> tuple[socket.socket, threading.Thread]:
    """Upper-cases what it reads until EOF, then closes: stands in for the gRPC server."""
    server = _listening(path)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def _stop(server: socket.socket, thread: threading.Thread) -> None:
    server.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone would not
    server.close()
    thread.join(5)
    assert not thread.is_alive()


def _recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_relay_copies_both_ways_and_passes_end_of_stream(workdir: str) -> None:
    public = os.path.join(workdir, "cri.sock")
    private = os.path.join(workdir, "grpc.sock")
    server, server_thread = _echo_server(private)
    relay = SocketRelay(_listening(public), private)
    relay.start()
    try:
        payload = b"abc" * 300_000  # more than one buffer, both ways
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(public)
            sender = threading.Thread(target=client.sendall, args=(payload,))
            sender.start()

            def finish_sending() -> None:
                sender.join()
                client.shutdown(socket.SHUT_WR)

            client_done = threading.Thread(target=finish_sending)
            client_done.start()
            assert _recv_all(client) == payload.upper()
            client_done.join()
    finally:
        relay.close()
        relay.close()  # idempotent
        _stop(server, server_thread)
    assert os.path.exists(public), "the inherited socket's file belongs to systemd"
    assert not [t for t in threading.enumerate() if t.name.startswith(("relay-", "activation-"))]


def test_after_stop_accepting_callers_wait_in_the_backlog(workdir: str) -> None:
    public = os.path.join(workdir, "cri.sock")
    private = os.path.join(workdir, "grpc.sock")
    server, server_thread = _echo_server(private)
    systemd_copy = _listening(public)  # what systemd keeps while cri-shim restarts
    relay = SocketRelay(socket.socket(fileno=os.dup(systemd_copy.fileno())), private)
    relay.start()
    relay.close()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as waiting:
            waiting.connect(public)  # queued, not refused
            successor = SocketRelay(socket.socket(fileno=os.dup(systemd_copy.fileno())), private)
            successor.start()
            try:
                waiting.sendall(b"queued")
                waiting.shutdown(socket.SHUT_WR)
                assert _recv_all(waiting) == b"QUEUED"
            finally:
                successor.close()
    finally:
        systemd_copy.close()
        _stop(server, server_thread)
