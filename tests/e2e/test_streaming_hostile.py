"""Hostile clients on the streaming URL, over raw sockets (issue 9): garbage instead of HTTP,
endless headers, a stalled request head, unknown, used and expired tokens, garbage after the
SPDY upgrade, a SYN_STREAM flood, and a reader that never reads while the container floods
stdout. Each must end in a closed connection within a bounded time, and afterwards the shim
still serves: Version answers and a fresh exec works. One shim and one pod serve the module;
the finalizer removes them and checks the host."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from cri_api import api_pb2
from tests.e2e.conftest import Pods, running_shim
from tests.e2e.harness import NetworkPlan, Shim, new_workdir
from tests.e2e.spdy_client import (
    EXEC_PROTOCOLS,
    HeaderCompressor,
    PortForwardConnection,
    RemoteCommand,
    SpdyConnection,
    UpgradeRefused,
    control_frame,
    data_frame,
    read_head,
    run_command,
    syn_stream,
    upgrade_request,
)
from tests.e2e.streaming_support import (
    Box,
    exec_url,
    port_forward_url,
    processes,
    resources,
    settled_resources,
    shim_pid,
    start_box,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# A connection the server gives up on must be closed within this many seconds. Streams that
# never complete a session are bounded by the streaming contract's 30 s stream-creation
# timeout (CRI-CONTAINERS.md §4.2), hence the margin over it; plain garbage must go at once.
CREATION_BOUND_S = 40.0
GARBAGE_BOUND_S = 10.0
TOKEN_TTL_S = 60.0
# The module's pod serves a page on 8080, for the port-forward cases.
HOSTILE_PAGE = b"page of the hostile-target pod"
HOSTILE_WEB = [
    "sh",
    "-c",
    f"mkdir -p /w && echo '{HOSTILE_PAGE.decode()}' > /w/index.html && exec httpd -f -p 8080 -h /w",
]
# A peer that reads nothing must be dropped within this: the server's write timeout (30 s)
# runs per write, and the kernel may keep taking writes into a growing send buffer first.
STALL_BOUND_S = 90.0


@pytest.fixture(scope="module")
def hostile_shim() -> Iterator[tuple[Shim, Box]]:
    data_dir = new_workdir()
    pid = os.getpid()
    plan = NetworkPlan(
        bridge=f"crhost{pid % 100000}", subnet=f"10.212.{pid % 250}.0/24", data_dir=data_dir
    )
    pods = Pods()
    log_dir = new_workdir()
    try:
        with running_shim(plan, pods) as shim:
            box = start_box(shim, log_dir, HOSTILE_WEB, name="hostile-target")
            pods.add(box.sandbox_id)
            yield shim, box
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(log_dir, ignore_errors=True)


@pytest.fixture
def target(hostile_shim: tuple[Shim, Box]) -> Iterator[tuple[Shim, Box]]:
    """The module's shim and pod; after each test, proof that the shim still serves."""
    shim, box = hostile_shim
    yield shim, box
    still_serving(shim, box)


def still_serving(shim: Shim, box: Box) -> None:
    assert shim.running(), f"the shim died:\n{shim.log()[-4000:]}"
    shim.runtime().Version(api_pb2.VersionRequest(), timeout=5)
    result = run_command(exec_url(shim, box.container_id, ["echo", "fresh"]), timeout=30)
    assert (result.exit_code, result.stdout) == (0, b"fresh\n"), result


def connection_state(server_port: int, client_port: int) -> str:
    """`ss`'s line for the server's end of the connection from `client_port`."""
    query = f"( sport = :{server_port} and dport = :{client_port} )"
    return subprocess.run(
        ["ss", "-Htnp", "state", "all", query], capture_output=True, text=True, check=True
    ).stdout.strip()


def shim_holds(pid: int, server_port: int, client_port: int) -> bool:
    """Whether the shim's process still owns its end of the connection from `client_port`."""
    return f"pid={pid}," in connection_state(server_port, client_port)


def url_parts(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "http", f"the streaming URL must be absolute http://, got {url!r}"
    assert parts.hostname and parts.port
    return parts.hostname, parts.port, parts.path


def raw_connection(url: str) -> tuple[socket.socket, str]:
    host, port, path = url_parts(url)
    return socket.create_connection((host, port), timeout=10), path


def closed_within(sock: socket.socket, bound: float) -> float:
    """Read (and discard) until the peer closes; how long that took. Fails after `bound`."""
    started = time.monotonic()
    sock.settimeout(0.5)
    while True:
        elapsed = time.monotonic() - started
        if elapsed > bound:
            raise AssertionError(f"the server kept the connection open for {bound:.0f} s")
        try:
            if not sock.recv(65536):
                return elapsed
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started


def send_until_refused(sock: socket.socket, chunks: Iterator[bytes], bound: float) -> bool:
    """Send chunks until the server stops taking them (closed or reset); True if it did."""
    sock.settimeout(bound)
    try:
        for chunk in chunks:
            sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        return True
    return False


def upgraded(url: str, protocols: tuple[str, ...] = EXEC_PROTOCOLS) -> tuple[socket.socket, bytes]:
    """A raw socket past a successful SPDY upgrade, and the bytes read after the head."""
    sock, path = raw_connection(url)
    host, port, _ = url_parts(url)
    sock.sendall(upgrade_request(path, f"{host}:{port}", protocols))
    response = read_head(sock)
    assert response.status == 101, (response.status, response.body[:200])
    return sock, response.body


def http_status(url: str, method: str = "POST", protocols: tuple[str, ...] = EXEC_PROTOCOLS) -> int:
    try:
        conn = SpdyConnection.open(url, protocols, method=method)
    except UpgradeRefused as refused:
        return refused.response.status
    conn.close()
    return 101


# -- before the upgrade ---------------------------------------------------------------------------


def test_garbage_instead_of_http(target: tuple[Shim, Box]) -> None:
    shim, box = target
    url = exec_url(shim, box.container_id, ["true"])
    sock, _ = raw_connection(url)
    with sock:
        sock.sendall(b"\x16\x03\x01\x02\x00" + os.urandom(4096) + b"\r\n\r\n")
        closed_within(sock, GARBAGE_BOUND_S)
    # The token was not consumed by the garbage on another connection: the URL still works.
    assert run_command(url).exit_code == 0


def test_endless_headers(target: tuple[Shim, Box]) -> None:
    shim, box = target
    url = exec_url(shim, box.container_id, ["true"])
    sock, path = raw_connection(url)
    with sock:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nUpgrade: SPDY/3.1\r\n".encode()
        sock.sendall(head)
        filler = (f"X-Filler-{i}: {'a' * 1000}\r\n".encode() for i in range(100_000))
        refused = send_until_refused(sock, filler, CREATION_BOUND_S)
        assert refused, "the server took 100 MB of request headers"
        closed_within(sock, GARBAGE_BOUND_S)


def test_one_huge_header_line(target: tuple[Shim, Box]) -> None:
    shim, box = target
    url = exec_url(shim, box.container_id, ["true"])
    sock, path = raw_connection(url)
    with sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nX-Big: ".encode())
        refused = send_until_refused(sock, (b"b" * 65536 for _ in range(1600)), CREATION_BOUND_S)
        assert refused, "the server took a 100 MB header line"
        closed_within(sock, GARBAGE_BOUND_S)


def test_a_request_head_that_never_ends(target: tuple[Shim, Box]) -> None:
    """Slowloris: a few header bytes, then silence. The server must not wait for ever."""
    shim, box = target
    url = exec_url(shim, box.container_id, ["true"])
    sock, path = raw_connection(url)
    with sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode())
        closed_within(sock, CREATION_BOUND_S + 30)


def test_unknown_used_and_expired_tokens_get_404(target: tuple[Shim, Box]) -> None:
    shim, box = target
    url = exec_url(shim, box.container_id, ["true"])
    issued = time.monotonic()
    # Another URL issued now is left unused until the token has expired.
    stale = exec_url(shim, box.container_id, ["true"])
    host, port, path = url_parts(url)
    verb, _, token = path.strip("/").rpartition("/")
    assert verb == "exec" and token, path

    unknown = f"http://{host}:{port}/exec/{'A' * len(token)}"
    assert http_status(unknown) == 404
    assert http_status(f"http://{host}:{port}/exec/") == 404
    assert http_status(f"http://{host}:{port}/exec/{token}x{token}") == 404

    assert run_command(url).exit_code == 0
    assert http_status(url) == 404, "a used token must not work twice"

    time.sleep(max(0.0, TOKEN_TTL_S + 2 - (time.monotonic() - issued)))
    assert http_status(stale) == 404, "a token older than a minute must be refused"


def test_no_protocol_offered_and_unknown_protocols(target: tuple[Shim, Box]) -> None:
    shim, box = target
    # No X-Stream-Protocol-Version: 400; none we speak: 403 (httpstream Handshake).
    assert http_status(exec_url(shim, box.container_id, ["true"]), protocols=()) == 400
    status = http_status(exec_url(shim, box.container_id, ["true"]), protocols=("v9.bogus",))
    assert status == 403


# -- after the upgrade ----------------------------------------------------------------------------


def test_spdy_garbage_after_the_upgrade(target: tuple[Shim, Box]) -> None:
    shim, box = target
    sock, _ = upgraded(exec_url(shim, box.container_id, ["sleep", "300"]))
    with sock:
        # A control frame of version 0x7fff and type 0xffff, then noise.
        send_until_refused(sock, iter([b"\xff\xff\xff\xff\x00\x00\x00\x10" + os.urandom(8192)]), 5)
        closed_within(sock, CREATION_BOUND_S)
    wait_for(
        "no `sleep 300` in the container",
        lambda: not any("sleep 300" in p for p in processes(shim, box.container_id)),
        30,
    )


def test_a_corrupt_header_block(target: tuple[Shim, Box]) -> None:
    """A SYN_STREAM whose header block is not zlib at all."""
    shim, box = target
    sock, _ = upgraded(exec_url(shim, box.container_id, ["true"]))
    with sock:
        body = struct.pack(">IIBB", 1, 0, 0, 0) + b"not zlib" * 16
        send_until_refused(sock, iter([control_frame(1, 0, body)]), 5)
        closed_within(sock, CREATION_BOUND_S)


def test_a_control_frame_claiming_16_mib(target: tuple[Shim, Box]) -> None:
    shim, box = target
    sock, _ = upgraded(exec_url(shim, box.container_id, ["true"]))
    with sock:
        frame_head = struct.pack(">HHI", 0x8003, 1, 0xFFFFFF)
        send_until_refused(sock, iter([frame_head, b"\x00" * 100_000]), 5)
        closed_within(sock, CREATION_BOUND_S)


def test_data_for_streams_that_were_never_opened(target: tuple[Shim, Box]) -> None:
    shim, box = target
    sock, _ = upgraded(exec_url(shim, box.container_id, ["true"]))
    with sock:
        frames = (data_frame(stream_id, b"x" * 1000) for stream_id in range(1, 20001, 2))
        send_until_refused(sock, frames, 10)
        closed_within(sock, CREATION_BOUND_S)


def test_a_syn_stream_flood(target: tuple[Shim, Box]) -> None:
    """Ten thousand streams, none of them a session's stdout: the session never starts, the
    server must neither keep them all nor keep the connection."""
    shim, box = target
    pid = shim_pid(shim)
    before = settled_resources(pid)
    sock, _ = upgraded(exec_url(shim, box.container_id, ["true"]))
    compressor = HeaderCompressor()
    with sock:
        frames = (
            syn_stream(stream_id, [("streamtype", "error")], compressor, fin=False)
            for stream_id in range(1, 20001, 2)
        )
        send_until_refused(sock, frames, 10)
        closed_within(sock, CREATION_BOUND_S)
    after = resources(pid)
    assert after.rss_kib - before.rss_kib < 64 * 1024, (before, after)


def test_a_client_that_never_reads(target: tuple[Shim, Box]) -> None:
    """The container floods stdout; the client's socket buffer is full and stays full. The
    shim must bound what it buffers and close the connection, and stay responsive meanwhile."""
    shim, box = target
    pid = shim_pid(shim)
    before = settled_resources(pid)
    url = exec_url(shim, box.container_id, ["sh", "-c", "exec yes flood-flood-flood"])
    host, port, path = url_parts(url)
    sock = socket.socket()
    # A small receive window: the server's writes block as soon as possible.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((host, port))
    with sock:
        sock.sendall(upgrade_request(path, f"{host}:{port}", EXEC_PROTOCOLS))
        assert read_head(sock).status == 101
        compressor = HeaderCompressor()
        for stream_id, kind in ((1, "error"), (3, "stdout"), (5, "stderr")):
            sock.sendall(syn_stream(stream_id, [("streamtype", kind)], compressor, fin=False))
        # Never read again. Meanwhile the gRPC server answers and other sessions run.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            started = time.monotonic()
            shim.runtime().Version(api_pb2.VersionRequest(), timeout=5)
            assert time.monotonic() - started < 1.0
            time.sleep(0.2)
        still_serving(shim, box)
        grown = resources(pid).rss_kib - before.rss_kib
        assert grown < 64 * 1024, f"the shim grew by {grown} KiB buffering a stalled stream"
        # Reading would unblock the server: whether it let go of the connection is asked of
        # the kernel instead (the socket no longer belongs to the shim's process).
        client_port = sock.getsockname()[1]
        try:
            wait_for(
                "the shim to drop the stalled connection",
                lambda: not shim_holds(pid, port, client_port),
                STALL_BOUND_S,
                interval=0.5,
            )
        except TimeoutError as err:
            raise AssertionError(f"{err}: {connection_state(port, client_port)}") from None
    wait_for(
        "the flooding process to go",
        lambda: not any("yes flood" in p for p in processes(shim, box.container_id)),
        30,
    )


def test_a_session_whose_client_vanishes_frees_its_process(target: tuple[Shim, Box]) -> None:
    shim, box = target
    session = RemoteCommand.start(
        exec_url(shim, box.container_id, ["sh", "-c", "echo up; exec cat"], stdin=True),
        stdin=True,
    )
    session.wait_output(b"up\n", 20)
    wait_for("cat to run", lambda: "cat" in processes(shim, box.container_id), 10)
    # Gone without a FIN on stdin or a GOAWAY: the TCP connection just closes.
    session.conn.close()
    wait_for("cat to go", lambda: "cat" not in processes(shim, box.container_id), 30)


def test_bad_port_forward_requests_fail_alone(target: tuple[Shim, Box]) -> None:
    """On one port-forward connection: a port nothing listens on and an invalid port each
    get a message on their error stream naming the port; the connection goes on, and a
    request to the pod's server after them is answered."""
    shim, box = target
    forwarder = PortForwardConnection(port_forward_url(shim, box.sandbox_id, [8080]))
    try:
        dead = forwarder.forward(81)
        dead_text = dead.wait_error(20)
        assert "port 81" in dead_text, dead_text
        invalid = forwarder.forward(0)
        invalid_text = invalid.wait_error(20)
        assert "port" in invalid_text and "0" in invalid_text, invalid_text
        assert not forwarder.conn.closed
        good = forwarder.forward(8080)
        good.send(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
        answer = good.recv_until(lambda got: HOSTILE_PAGE in got, 20)
        assert HOSTILE_PAGE in answer, answer[:300]
        assert good.error_text() == ""
    finally:
        forwarder.close()
