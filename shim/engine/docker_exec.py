"""Run a command in a container through Docker's exec API, with a deadline and bounded output.

One call is three HTTP requests and nothing more (kubelet runs exec probes every few seconds on
every pod): exec_create, exec_start on a hijacked socket, exec_inspect for the exit code. The
socket is read with `poll` against the deadline and demultiplexed with the sans-IO
`StreamDemuxer`.

Output: stdout and stderr are each kept up to `MAX_OUTPUT` (16 MiB, kubelet's and cri-dockerd's
message limit). Beyond it the bytes are read and dropped, not left in the pipe: a command that
prints a lot then exits still finishes with its real exit code, memory stays bounded, and the
deadline still bounds the time (cri-dockerd does the same with a limit writer).

Timeout: Docker cannot kill an exec, so on expiry the exec's process tree is killed by PID
(`proc_tree.kill_tree`, CRI-CONTAINERS.md §3), we wait for Docker to see it end, then close
the socket: nothing keeps running after a timed-out call.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

import docker
import docker.errors

from shim.engine import proc_tree
from shim.engine.stdcopy import DemuxError, Stream, StreamDemuxer
from shim.errors import FailedPreconditionError, InfraRuntimeError, NotFoundError

log = logging.getLogger(__name__)

MAX_OUTPUT = 16 * 1024 * 1024
READ_SIZE = 64 * 1024
# How long to wait for Docker to report an exec's PID, or its end after a kill or an EOF.
SETTLE_TIMEOUT = 2.0


class DockerClientOwner(Protocol):
    """What exec needs of the infra runtime: its low-level Docker client."""

    @property
    def client(self) -> docker.APIClient: ...


class CappedBuffer:
    """Keeps the first `limit` bytes written and counts the rest, which it drops."""

    def __init__(self, limit: int = MAX_OUTPUT) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._kept = 0
        self.dropped = 0

    def write(self, data: bytes) -> None:
        room = max(self._limit - self._kept, 0)
        if room and data:
            kept = data[:room]
            self._chunks.append(kept)
            self._kept += len(kept)
        self.dropped += max(len(data) - room, 0)

    def getvalue(self) -> bytes:
        return b"".join(self._chunks)


@dataclass(frozen=True)
class ExecOutcome:
    stdout: bytes
    stderr: bytes
    exit_code: int
    timed_out: bool  # the deadline passed; the exec's processes were killed
    elapsed: float  # seconds from exec start to EOF or to the deadline


def run_exec(
    client: docker.APIClient,
    container_id: str,
    cmd: list[str],
    timeout: float | None,
    deadline: float | None = None,
    limit: int = MAX_OUTPUT,
) -> ExecOutcome:
    """Run `cmd` in the running container `container_id` (a full id: it is matched against
    cgroup paths) without TTY or stdin.

    `timeout` counts from the exec's start, as containerd does; `deadline` is an absolute
    `time.monotonic()` (the caller's gRPC deadline); whichever comes first ends the wait.
    """
    exec_id = _create(client, container_id, cmd)
    sock_io = _start(client, exec_id, container_id)
    started = time.monotonic()
    stop_at = _earliest(started + timeout if timeout else None, deadline)
    stdout, stderr = CappedBuffer(limit), CappedBuffer(limit)
    finished = False
    try:
        finished = read_streams(sock_io, stop_at, stdout, stderr)
        elapsed = time.monotonic() - started
    finally:
        try:
            # Also when reading failed: no path leaves the command running (§3).
            if not finished:
                _kill(client, exec_id, container_id)
        finally:
            _close(sock_io)  # after the kill, in the order of §3
    if not finished:
        return ExecOutcome(stdout.getvalue(), stderr.getvalue(), -1, True, elapsed)
    if stdout.dropped or stderr.dropped:
        log.info(
            "exec in container %s: dropped %d stdout and %d stderr bytes over the %d-byte cap",
            container_id,
            stdout.dropped,
            stderr.dropped,
            limit,
        )
    exit_code = _exit_code(client, exec_id, container_id)
    return ExecOutcome(stdout.getvalue(), stderr.getvalue(), exit_code, False, elapsed)


def read_streams(
    sock_io: Any, stop_at: float | None, stdout: CappedBuffer, stderr: CappedBuffer
) -> bool:
    """Demultiplex the hijacked exec stream into `stdout` and `stderr` until EOF (True) or
    until `stop_at` passes (False).

    `sock_io` is what docker-py's `exec_start(socket=True)` returns: a `socket.SocketIO` over
    the connection, or a plain socket (tests). While reading the HTTP 101 headers, http.client
    may have buffered the first frames in the response's reader; they are taken from there
    first, or a fast command's output would be lost.
    """
    sock = _raw_socket(sock_io)
    sock.setblocking(False)
    demuxer = StreamDemuxer()
    sinks = {Stream.STDOUT: stdout, Stream.STDERR: stderr}

    def feed(data: bytes) -> None:
        try:
            frames = demuxer.feed(data)
        except DemuxError as err:
            raise InfraRuntimeError(f"failed to read exec output: {err}") from err
        for stream, payload in frames:
            sink = sinks.get(stream)
            if sink is not None:
                sink.write(payload)
            elif stream is Stream.SYSTEMERR:
                log.warning("docker reported an error in an exec stream: %r", payload[:500])

    for leftover in _buffered(sock_io):
        feed(leftover)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    while True:
        if stop_at is None:
            wait_ms = -1
        else:
            remaining = stop_at - time.monotonic()
            if remaining <= 0:
                return False
            wait_ms = max(1, int(remaining * 1000) + 1)
        if not poller.poll(wait_ms):
            continue  # the loop head decides whether the deadline has passed
        try:
            data = sock.recv(READ_SIZE)
        except BlockingIOError:
            continue
        except ConnectionResetError:
            data = b""
        if not data:
            if demuxer.pending:
                log.warning("exec stream ended inside a frame (%d bytes)", demuxer.pending)
            return True
        feed(data)


def _create(client: docker.APIClient, container_id: str, cmd: list[str]) -> str:
    try:
        created = client.exec_create(container_id, cmd, stdout=True, stderr=True, tty=False)
    except docker.errors.NotFound as err:
        raise NotFoundError(f"container {container_id} not found: {_reason(err)}") from err
    except docker.errors.APIError as err:
        if err.status_code == 409:  # "Container ... is not running" / "is paused"
            raise FailedPreconditionError(
                f"failed to exec in container {container_id}: {_reason(err)}"
            ) from err
        raise InfraRuntimeError(
            f"failed to create exec in container {container_id}: {_reason(err)}"
        ) from err
    except docker.errors.DockerException as err:
        raise InfraRuntimeError(
            f"failed to create exec in container {container_id}: {err}"
        ) from err
    return str(created["Id"])


def _start(client: docker.APIClient, exec_id: str, container_id: str) -> Any:
    try:
        return client.exec_start(exec_id, tty=False, socket=True)
    except docker.errors.DockerException as err:
        raise InfraRuntimeError(f"failed to start exec in container {container_id}: {err}") from err


def _exit_code(client: docker.APIClient, exec_id: str, container_id: str) -> int:
    """The exec's exit code. Docker may close the stream a moment before it records the exit
    (the pipes close when the process dies; the exit event comes on its own), so a still
    "running" exec is asked again for a short while."""
    give_up = time.monotonic() + SETTLE_TIMEOUT
    pause = 0.005
    while True:
        info = _inspect(client, exec_id, container_id)
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        if time.monotonic() >= give_up:
            raise InfraRuntimeError(
                f"failed to get the exit code of exec {exec_id} in container {container_id}: "
                f"still running {SETTLE_TIMEOUT} s after its output ended"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _kill(client: docker.APIClient, exec_id: str, container_id: str) -> None:
    """The §3 recipe: wait for the PID, kill its tree, wait for Docker to see the exec end."""
    give_up = time.monotonic() + SETTLE_TIMEOUT
    pid = 0
    while True:
        info = _inspect(client, exec_id, container_id)
        pid = int(info.get("Pid") or 0)
        if pid or not info.get("Running") or time.monotonic() >= give_up:
            break
        time.sleep(0.02)
    if pid and info.get("Running"):
        killed = proc_tree.kill_tree(pid, container_id)
        log.info("exec %s in container %s timed out: killed pids %s", exec_id, container_id, killed)
    give_up = time.monotonic() + SETTLE_TIMEOUT
    while info.get("Running") and time.monotonic() < give_up:
        time.sleep(0.02)
        info = _inspect(client, exec_id, container_id)
    if info.get("Running"):
        log.warning("exec %s in container %s still running after the kill", exec_id, container_id)


def _inspect(client: docker.APIClient, exec_id: str, container_id: str) -> dict[str, Any]:
    try:
        return dict(client.exec_inspect(exec_id))
    except docker.errors.DockerException as err:
        raise InfraRuntimeError(
            f"failed to inspect exec {exec_id} in container {container_id}: {err}"
        ) from err


def _raw_socket(sock_io: Any) -> socket.socket:
    raw = getattr(sock_io, "_sock", sock_io)  # socket.SocketIO keeps its socket in _sock
    if not isinstance(raw, socket.socket):
        raise InfraRuntimeError(f"docker returned an unexpected exec stream {type(sock_io)!r}")
    return raw


def _buffered(sock_io: Any) -> list[bytes]:
    """Bytes the HTTP response's buffered reader already took off the socket.

    docker-py keeps the response on the SocketIO (`_response`); its urllib3 body wraps the
    http.client response whose `fp` is the reader. With the socket non-blocking, `read1`
    returns everything buffered (http.client's reader holds at most 8 KiB, less than
    READ_SIZE) or, when nothing is, does one raw read, which returns b"" if nothing is waiting.
    One call, not a loop: a loop would read a chatty command's output past the deadline.
    """
    reader: Any = sock_io
    for name in ("_response", "raw", "_fp", "fp"):
        reader = getattr(reader, name, None)
    if reader is None or not hasattr(reader, "read1"):
        return []
    try:
        chunk = reader.read1(READ_SIZE)
    except (OSError, ValueError):
        return []
    return [bytes(chunk)] if chunk else []


def _close(sock_io: Any) -> None:
    """Shut the connection down for Docker's side too, then drop every reference docker-py and
    http.client hold on it, so the descriptor is really closed (not left to the GC)."""
    raw = _raw_socket(sock_io)
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    response = getattr(sock_io, "_response", None)
    with contextlib.suppress(Exception):
        sock_io.close()
    raw.close()
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()


def _earliest(*times: float | None) -> float | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def _reason(err: docker.errors.APIError) -> str:
    return str(err.explanation or err)
