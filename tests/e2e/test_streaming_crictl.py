"""Streaming end to end with the real crictl v1.37 (issue 9): `exec -it` on a real terminal
(tmux) with typing, output and window resizes, non-tty exec with stdin and exit codes,
`--transport websocket`, `attach`, `port-forward` into a pod and a host-network pod, many
sessions at once beside a responsive gRPC server, and clients killed mid-session (their
processes go, the shim's fds and threads do not grow). Each test runs its own shim; the shim
fixture's finalizer removes every pod and checks the host."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pty
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cri_api import api_pb2
from shim.process import stop_process
from tests.e2e.conftest import Pods
from tests.e2e.harness import Shim
from tests.e2e.streaming_support import (
    BIG_FILE_BYTES,
    PAGE,
    Box,
    crictl_command,
    exec_sync,
    fd_kinds,
    free_port,
    processes,
    resources,
    settled_resources,
    shim_pid,
    start_box,
    start_web_box,
    streaming_log,
    tmux,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TRANSPORTS = ["spdy", "websocket"]
PROMPT = "# "  # busybox sh as root


@pytest.fixture
def box(shim: Shim, pods: Pods, tmp_path: Path) -> Box:
    b = start_box(shim, str(tmp_path / "logs"))
    pods.add(b.sandbox_id)
    return b


@pytest.fixture
def web(shim: Shim, pods: Pods, tmp_path: Path) -> Box:
    b = start_web_box(shim, str(tmp_path / "logs"))
    pods.add(b.sandbox_id)
    return b


def crictl(
    shim: Shim, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        crictl_command(shim, *args), input=stdin, capture_output=True, check=False, timeout=120
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def big_file_digest(shim: Shim, web: Box) -> str:
    return exec_sync(shim, web.container_id, ["sha256sum", "/www/big"]).split()[0]


# -- exec -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_tty_types_reads_and_resizes(shim: Shim, box: Box, transport: str) -> None:
    with tmux() as term:
        command = crictl_command(
            shim, "exec", "--transport", transport, "-it", box.container_id, "sh"
        )
        term.start(command, width=100, height=30)
        term.wait_screen(PROMPT)
        # The shell computes the marker: an echo of the typed line alone would not prove the
        # command ran in the container.
        term.send_line("echo marker-$((6*7)) $(hostname)")
        term.wait_screen(f"marker-42 {box.sandbox_config.hostname}")
        term.send_line("stty size")
        term.wait_screen("30 100")
        term.resize(132, 41)
        assert term.pane("#{pane_width} #{pane_height}") == "132 41"
        term.wait_stty_size(41, 132)
        term.resize(80, 24)
        term.wait_stty_size(24, 80)
        term.send_line("exit 7")
        assert term.exit_status() == 1
        term.wait_screen("command terminated with exit code 7")
    wait_for("the exec'd shell to end", lambda: "sh" not in processes(shim, box.container_id), 10)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_without_tty_pipes_stdin_and_exit_codes(shim: Shim, box: Box, transport: str) -> None:
    ctr = box.container_id
    flags = ["exec", "--transport", transport]

    # crictl's streaming exec exits 1 on any failure; the code itself arrives as client-go's
    # reading of the v4 status (NonZeroExitCode, cause ExitCode) on the error stream.
    failed = crictl(shim, *flags, ctr, "sh", "-c", "exit 3")
    assert failed.returncode == 1, failed.stderr
    assert b"command terminated with exit code 3" in failed.stderr, failed.stderr
    assert crictl(shim, *flags, ctr, "true").returncode == 0

    split = crictl(shim, *flags, ctr, "sh", "-c", "echo to-out; echo to-err >&2")
    assert split.returncode == 0, split.stderr
    assert split.stdout == b"to-out\n"
    assert b"to-err\n" in split.stderr

    # stdin reaches the process, and its end (SPDY FIN, WebSocket v5 close) ends `tr`.
    upper = crictl(shim, *flags, "-i", ctr, "tr", "a-z", "A-Z", stdin=b"hello stdin\n")
    assert (upper.returncode, upper.stdout) == (0, b"HELLO STDIN\n"), upper.stderr

    payload = os.urandom(3_000_000)
    counted = crictl(shim, *flags, "-i", ctr, "sha256sum", stdin=payload)
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.split()[0].decode() == sha256(payload)

    # Megabytes out, none lost, with the exit code after them.
    flood = crictl(shim, *flags, ctr, "sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' x; exit 9")
    assert b"command terminated with exit code 9" in flood.stderr, flood.stderr
    assert flood.stdout == b"x" * 5_000_000


def test_exec_of_a_missing_command_fails_cleanly(shim: Shim, box: Box) -> None:
    result = crictl(shim, "exec", box.container_id, "/no/such/binary")
    assert result.returncode != 0
    said = result.stdout + result.stderr
    # Whatever the path (Docker reports a failed exec on the stream, with 126), the user
    # learns which command could not run.
    assert b"/no/such/binary" in said, said
    # The shim still serves streams afterwards.
    assert crictl(shim, "exec", box.container_id, "echo", "ok").stdout == b"ok\n"


# -- attach ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attach_tty_reaches_the_main_process(
    shim: Shim, pods: Pods, tmp_path: Path, transport: str
) -> None:
    # MARK is in the environment of the container's main shell only, not of exec sessions
    # (containers share the pod's PID namespace, so $$ cannot tell them apart).
    command = ["env", "MARK=main-process", "sh"]
    box = start_box(shim, str(tmp_path / "logs"), command, name="console", stdin=True, tty=True)
    pods.add(box.sandbox_id)
    attach = crictl_command(shim, "attach", "--transport", transport, "-it", box.container_id)
    with tmux() as term:
        term.start(attach, width=90, height=25)
        time.sleep(1)  # the prompt was printed before we attached: nothing to wait for
        term.send_line("echo attached-$((2+3)) $MARK")
        term.wait_screen("attached-5 main-process")
        term.resize(101, 33)
        term.wait_stty_size(33, 101)
        term.send_line("exit 4")
        term.exit_status()
    exited = shim.wait_container_state(box.container_id, api_pb2.CONTAINER_EXITED)
    assert (exited.state, exited.exit_code) == (api_pb2.CONTAINER_EXITED, 4)


def test_attach_without_tty_splits_stdout_and_stderr(
    shim: Shim, pods: Pods, tmp_path: Path
) -> None:
    script = "read line; echo got:$line; echo err:$line >&2; exit 5"
    box = start_box(shim, str(tmp_path / "logs"), ["sh", "-c", script], name="reader", stdin=True)
    pods.add(box.sandbox_id)
    result = crictl(shim, "attach", "-i", box.container_id, stdin=b"piped-line\n")
    assert b"got:piped-line\n" in result.stdout, (result.stdout, result.stderr)
    assert b"err:piped-line\n" in result.stderr
    exited = shim.wait_container_state(box.container_id, api_pb2.CONTAINER_EXITED)
    assert exited.exit_code == 5


# -- port-forward ---------------------------------------------------------------------------------


@contextlib.contextmanager
def port_forward(
    shim: Shim, sandbox_id: str, remote: int, transport: str = "spdy"
) -> Iterator[int]:
    """`crictl port-forward` in the background; yields the local port once it listens."""
    local = free_port()
    command = crictl_command(
        shim, "port-forward", "--transport", transport, sandbox_id, f"{local}:{remote}"
    )
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(f"crictl port-forward to listen on {local}", lambda: _listens(local, proc), 20)
        yield local
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def _listens(port: int, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        raise RuntimeError(f"crictl port-forward exited with {proc.returncode}: {out}")
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_get(port: int, path: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        body: bytes = r.read()
        return body


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_port_forward_reaches_the_pod(shim: Shim, web: Box, transport: str) -> None:
    digest = big_file_digest(shim, web)
    with port_forward(shim, web.sandbox_id, 80, transport) as local:
        # Every request is a new TCP connection, so a new stream pair on the one session.
        for _ in range(5):
            assert http_get(local, "/").decode().strip() == PAGE
        big = http_get(local, "/big")
        assert (len(big), sha256(big)) == (BIG_FILE_BYTES, digest)
    # A port nothing listens on in the pod fails the connection (the error stream says why),
    # and the next session works.
    with port_forward(shim, web.sandbox_id, 81, transport) as dead, pytest.raises(OSError):
        http_get(dead, "/", timeout=15)
    with port_forward(shim, web.sandbox_id, 80, transport) as local:
        assert http_get(local, "/").decode().strip() == PAGE


def test_port_forward_into_a_host_network_pod(shim: Shim, pods: Pods, tmp_path: Path) -> None:
    port = free_port()
    box = start_web_box(shim, str(tmp_path / "logs"), port=port, host_network=True)
    pods.add(box.sandbox_id)
    with port_forward(shim, box.sandbox_id, port) as local:
        assert http_get(local, "/").decode().strip() == PAGE
        assert len(http_get(local, "/big")) == BIG_FILE_BYTES


UPLOAD_BLOCKS = 128  # of 64 KiB: 8 MiB a connection


def _upload(port: int, payload: bytes) -> str:
    """Send `payload` at once on a new connection; the sink's answer (its sha256)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(payload)
        answer = b""
        while b"\n" not in answer:
            chunk = s.recv(256)
            if not chunk:
                break
            answer += chunk
    return answer.decode().split(" ")[0].strip()


def test_port_forward_takes_an_upload_sent_right_after_connecting(
    shim: Shim, pods: Pods, tmp_path: Path
) -> None:
    """A client that writes megabytes the moment it connects (before the shim has dialled
    the pod): every byte arrives, in order, on every connection, one after another and
    several at once."""
    script = f"dd bs=65536 count={UPLOAD_BLOCKS} iflag=fullblock 2>/dev/null | sha256sum"
    sink = ["nc", "-ll", "-p", "9000", "-e", "sh", "-c", script]
    box = start_box(shim, str(tmp_path / "logs"), sink, name="sink")
    pods.add(box.sandbox_id)
    payloads = [os.urandom(UPLOAD_BLOCKS * 65536) for _ in range(4)]
    with port_forward(shim, box.sandbox_id, 9000) as local:
        try:
            for payload in payloads:
                assert _upload(local, payload) == sha256(payload)
            with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
                digests = list(pool.map(lambda p: _upload(local, p), payloads))
        except OSError as err:
            raise AssertionError(f"{err!r}; the shim says:\n{streaming_log(shim)}") from err
        assert digests == [sha256(p) for p in payloads]


# -- many at once ---------------------------------------------------------------------------------


class Prober:
    """Version and ListPodSandbox back to back on a thread of its own; the worst latency."""

    def __init__(self, shim: Shim) -> None:
        self._stub = shim.runtime()
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._stub.Version(api_pb2.VersionRequest(), timeout=10)
                self._stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10)
            except Exception as err:
                self.errors.append(repr(err))
            self.latencies.append(time.monotonic() - started)
            time.sleep(0.02)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


SESSIONS = 20


def _forwarded_download(port: int) -> bytes:
    """A raw HTTP/1.0 GET of /big on one connection, read to its end."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"GET /big HTTP/1.0\r\nHost: pod\r\n\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head[:200]
    return body


def test_twenty_execs_and_twenty_forwards_at_once_keep_grpc_responsive(
    shim: Shim, web: Box
) -> None:
    digest = big_file_digest(shim, web)
    ctr = web.container_id
    with port_forward(shim, web.sandbox_id, 80) as local, Prober(shim) as prober:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=2 * SESSIONS) as pool:
            execs = [
                pool.submit(crictl, shim, "exec", ctr, "sh", "-c", f"sleep 3; echo done-{i}")
                for i in range(SESSIONS)
            ]
            downloads = [pool.submit(_forwarded_download, local) for _ in range(SESSIONS)]
            outputs = [f.result(timeout=120) for f in execs]
            bodies = [f.result(timeout=120) for f in downloads]
        wall = time.monotonic() - started
    for i, out in enumerate(outputs):
        assert (out.returncode, out.stdout) == (0, f"done-{i}\n".encode()), out.stderr
    assert [len(b) for b in bodies] == [BIG_FILE_BYTES] * SESSIONS
    assert {sha256(b) for b in bodies} == {digest}
    # Serialised, 20 sessions of `sleep 3` would take a minute.
    assert wall < 30, f"20 sessions took {wall:.1f} s: they did not run at once"
    assert not prober.errors, prober.errors[:3]
    assert len(prober.latencies) > 20
    worst = max(prober.latencies)
    assert worst < 1.0, f"Version+ListPodSandbox took up to {worst * 1000:.0f} ms"


# -- clients that vanish --------------------------------------------------------------------------


def _spawn_on_pty(command: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """crictl with a terminal of its own (what -t needs); returns it and the master fd."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    return proc, master


def _drain(fd: int, stop: threading.Event) -> None:
    """Keep reading a pty master so that the client never blocks writing to its terminal."""
    while not stop.is_set():
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def _start_doomed_sessions(
    shim: Shim, box: Box, round_no: int, count: int
) -> tuple[list[subprocess.Popen[bytes]], list[int], list[str]]:
    """`count` tty sessions running sleep and `count` stdin-fed ones running head, each
    marked by a distinct argument so that its process can be found in the container."""
    procs: list[subprocess.Popen[bytes]] = []
    masters: list[int] = []
    markers: list[str] = []
    for i in range(count):
        marker = f"{40000 + round_no * 100 + i}"
        tty_cmd = crictl_command(shim, "exec", "-it", box.container_id, "sleep", marker)
        proc, master = _spawn_on_pty(tty_cmd)
        procs.append(proc)
        masters.append(master)
        markers.append(f"sleep {marker}")
        size = f"99999{round_no}{i:02d}"
        piped = crictl_command(shim, "exec", "-i", box.container_id, "head", "-c", size)
        quiet = subprocess.DEVNULL
        procs.append(subprocess.Popen(piped, stdin=subprocess.PIPE, stdout=quiet, stderr=quiet))
        markers.append(f"head -c {size}")
    return procs, masters, markers


def _kill_sessions_and_wait(shim: Shim, box: Box, round_no: int, count: int) -> None:
    procs, masters, markers = _start_doomed_sessions(shim, box, round_no, count)
    stop = threading.Event()
    drains = [threading.Thread(target=_drain, args=(m, stop), daemon=True) for m in masters]
    for t in drains:
        t.start()
    try:

        def all_running() -> bool:
            running = processes(shim, box.container_id)
            return all(any(m in p for p in running) for m in markers)

        wait_for("every exec'd process to run", all_running, 30, interval=0.3)
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait(timeout=10)

        def none_left() -> bool:
            running = processes(shim, box.container_id)
            return not any(m in p for p in running for m in markers)

        try:
            wait_for("the killed clients' processes to go", none_left, 30, interval=0.3)
        except TimeoutError as err:
            left = processes(shim, box.container_id)
            raise AssertionError(f"{err}; still running: {left}") from None
    finally:
        stop.set()
        for proc in procs:
            stop_process(proc, sig=signal.SIGKILL)
            if proc.stdin is not None:
                proc.stdin.close()
        for m in masters:
            os.close(m)


FD_SLACK = 8
THREAD_SLACK = 3


def test_killed_clients_free_their_processes_and_the_shims_resources(shim: Shim, box: Box) -> None:
    pid = shim_pid(shim)
    # The first round, as big as the others, grows what grows once with that many sessions
    # at a time (thread pools, pooled Docker connections); a leak grows with every round.
    _kill_sessions_and_wait(shim, box, 0, 5)
    baseline, baseline_fds = settled_resources(pid), fd_kinds(pid)
    for round_no in (1, 2):
        _kill_sessions_and_wait(shim, box, round_no, 5)
    # Sessions end in the background (a hung-up exec gets its SIGKILL a while later): what
    # they held must be back within a bound, not at once. The slack covers the Docker client's
    # pooled connections, whose number follows the peak of concurrent calls (±6 seen over 60
    # sessions with no trend); a leak of one fd per session would be 20 here.
    deadline = time.monotonic() + 30
    while not (after := resources(pid)).within(baseline, FD_SLACK, THREAD_SLACK):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert after.within(baseline, fds=FD_SLACK, threads=THREAD_SLACK), (
        f"20 killed sessions later the shim holds {after.fds} fds and {after.threads} threads,"
        f" {baseline.fds} and {baseline.threads} before; fds by kind before {baseline_fds},"
        f" after {fd_kinds(pid)}"
    )
    # And it still streams.
    assert crictl(shim, "exec", box.container_id, "echo", "alive").stdout == b"alive\n"
