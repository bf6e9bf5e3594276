"""Exec and attach on Docker's hijacked connections (docker-py's low-level APIClient).

`exec_start(socket=True)` and `attach_socket` upgrade the HTTP connection to Docker and hand
back the raw socket: stdin goes in as written, output comes back raw for a TTY and in Docker's
multiplexed frames otherwise (`shim.engine.stdcopy`). Closing the write side is stdin's EOF;
closing the socket makes Docker close the process's stdin (and, for a TTY, hang it up).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from typing import Any

import docker
import docker.errors

from shim.engine import proc_tree
from shim.engine.docker_exec import SETTLE_TIMEOUT
from shim.engine.stdcopy import DemuxError, Stream, StreamDemuxer
from shim.errors import FailedPreconditionError, InfraRuntimeError, NotFoundError
from shim.streaming.request_cache import AttachTarget, ExecTarget

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024


class DockerStream:
    """One hijacked connection: `read` in one thread, `write_stdin`/`close_stdin` in another,
    `close` from anywhere (it also ends a blocked `read`)."""

    def __init__(self, sock_io: Any, tty: bool) -> None:
        self._sock_io = sock_io
        raw = getattr(sock_io, "_sock", sock_io)  # socket.SocketIO keeps its socket in _sock
        if not isinstance(raw, socket.socket):
            raise InfraRuntimeError(f"docker returned an unexpected stream {type(sock_io)!r}")
        self._sock = raw
        self._demuxer = None if tty else StreamDemuxer()
        self._leftover = _buffered(sock_io)  # leaves the socket blocking
        self._closed = False

    def read(self) -> list[tuple[Stream, bytes]]:
        """The next output: (STDOUT or STDERR, bytes) pieces; [] at EOF."""
        while True:
            if self._leftover:
                data, self._leftover = self._leftover, b""
            else:
                try:
                    data = self._sock.recv(READ_SIZE)
                except OSError:
                    data = b""
            if not data:
                return []
            if self._demuxer is None:
                return [(Stream.STDOUT, data)]
            try:
                frames = self._demuxer.feed(data)
            except DemuxError as err:
                raise InfraRuntimeError(f"failed to read Docker's stream: {err}") from err
            out: list[tuple[Stream, bytes]] = [
                (s, p) for s, p in frames if s in (Stream.STDOUT, Stream.STDERR) and p
            ]
            for s, p in frames:
                if s is Stream.SYSTEMERR:
                    log.warning("docker reported an error in a stream: %r", p[:500])
            if out:
                return out

    def write_stdin(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        response = getattr(self._sock_io, "_response", None)
        with contextlib.suppress(Exception):
            self._sock_io.close()
        self._sock.close()
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()


def start_exec(client: docker.APIClient, target: ExecTarget) -> tuple[str, DockerStream]:
    """Create and start the exec; its id and its connection."""
    cid = target.container_id
    try:
        created = client.exec_create(
            cid,
            list(target.cmd),
            stdin=target.stdin,
            stdout=target.stdout,
            stderr=target.stderr,
            tty=target.tty,
        )
        exec_id = str(created["Id"])
        sock_io = client.exec_start(exec_id, tty=target.tty, socket=True)
    except docker.errors.NotFound as err:
        raise NotFoundError(f"container {cid} not found: {_reason(err)}") from err
    except docker.errors.APIError as err:
        if err.status_code == 409:
            raise FailedPreconditionError(
                f"failed to exec in container {cid}: {_reason(err)}"
            ) from err
        raise InfraRuntimeError(f"failed to exec in container {cid}: {_reason(err)}") from err
    except docker.errors.DockerException as err:
        raise InfraRuntimeError(f"failed to exec in container {cid}: {err}") from err
    return exec_id, DockerStream(sock_io, target.tty)


def start_attach(client: docker.APIClient, target: AttachTarget) -> DockerStream:
    cid = target.container_id
    params = {
        "stdin": int(target.stdin),
        "stdout": int(target.stdout),
        "stderr": int(target.stderr),
        "stream": 1,
    }
    try:
        sock_io = client.attach_socket(cid, params=params)
    except docker.errors.NotFound as err:
        raise NotFoundError(f"container {cid} not found: {_reason(err)}") from err
    except docker.errors.DockerException as err:
        raise InfraRuntimeError(f"failed to attach to container {cid}: {err}") from err
    return DockerStream(sock_io, target.container_tty)


def exec_exit_code(client: docker.APIClient, exec_id: str, container_id: str) -> int:
    """The exec's exit code once Docker has recorded it (it may close the stream first)."""
    give_up = time.monotonic() + SETTLE_TIMEOUT
    pause = 0.005
    while True:
        try:
            info = client.exec_inspect(exec_id)
        except docker.errors.DockerException as err:
            raise InfraRuntimeError(
                f"failed to inspect exec {exec_id} in container {container_id}: {err}"
            ) from err
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        if time.monotonic() >= give_up:
            raise InfraRuntimeError(
                f"exec {exec_id} in container {container_id} still runs after its output ended"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def hang_up_exec(
    client: docker.APIClient, exec_id: str, container_id: str, grace: float = 1.0
) -> None:
    """The client left while the exec still runs: SIGHUP it, as a closed terminal would, and
    SIGKILL what is left of its process tree after `grace` (containerd kills an exec whose
    stream is gone; Docker would leave it running, moby#9098)."""
    try:
        info = client.exec_inspect(exec_id)
        pid = int(info.get("Pid") or 0)
        if not info.get("Running") or not pid:
            return
        if proc_tree.in_container(pid, container_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)
        give_up = time.monotonic() + grace
        while time.monotonic() < give_up:
            time.sleep(0.05)
            if not client.exec_inspect(exec_id).get("Running"):
                return
        killed = proc_tree.kill_tree(pid, container_id)
        log.info("exec %s in %s outlived its client: killed pids %s", exec_id, container_id, killed)
    except docker.errors.DockerException as err:
        log.warning("failed to end exec %s in %s: %s", exec_id, container_id, err)


def resize_exec(client: docker.APIClient, exec_id: str, width: int, height: int) -> None:
    try:
        client.exec_resize(exec_id, height=height, width=width)
    except docker.errors.DockerException as err:
        log.info("failed to resize exec %s to %dx%d: %s", exec_id, width, height, err)


def resize_container(client: docker.APIClient, container_id: str, width: int, height: int) -> None:
    try:
        client.resize(container_id, height=height, width=width)
    except docker.errors.DockerException as err:
        log.info("failed to resize container %s to %dx%d: %s", container_id, width, height, err)


def _buffered(sock_io: Any) -> bytes:
    """What http.client's reader already took off the socket while reading the 101 (a fast
    command's first output). With the socket non-blocking, one `read1` returns what is
    buffered, or b"" when nothing is (the same reading as shim.engine.docker_exec)."""
    reader: Any = sock_io
    for name in ("_response", "raw", "_fp", "fp"):
        reader = getattr(reader, name, None)
    if reader is None or not hasattr(reader, "read1"):
        return b""
    raw = getattr(sock_io, "_sock", sock_io)
    raw.setblocking(False)
    try:
        chunk = reader.read1(READ_SIZE)
    except (OSError, ValueError):
        chunk = b""
    finally:
        raw.setblocking(True)
    return bytes(chunk) if chunk else b""


def _reason(err: docker.errors.APIError) -> str:
    return str(err.explanation or err)
