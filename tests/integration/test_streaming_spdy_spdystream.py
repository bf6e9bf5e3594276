"""Our SPDY framer against the real client library: moby/spdystream v0.5.1 (under kubectl,
crictl and kubelet), built from tests/spdystream_peer, dials a loopback server driven by
`SpdyConnection` and runs client-go's exec pattern (5 streams, stdin half-close, resize, PING,
stdout and error to EOF, a reset, GOAWAY). This is the direction the captures cannot cover:
spdystream decoding what we encode, including our zlib header stream."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from shim.streaming.spdy import (
    DataReceived,
    Event,
    GoAwayReceived,
    SpdyConnection,
    StreamEnded,
    StreamOpened,
)

PEER_SOURCE = pathlib.Path(__file__).resolve().parents[1] / "spdystream_peer"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def peer_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(go, os.X_OK):
        pytest.skip("the spdystream peer could not be built: no Go toolchain (make test-tools)")
    binary = tmp_path_factory.mktemp("spdystream-peer") / "spdystream-peer"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=PEER_SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if built.returncode:
        pytest.skip(f"the spdystream peer could not be built: {built.stderr[-2000:]}")
    return str(binary)


class ExecLikeServer:
    """One connection on 127.0.0.1, served the way the streaming server will: reply to every
    stream, and once stdin ends write stdout and a v4 status on the error stream, then FIN."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="spdy-test-server", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            sock, _ = self.listener.accept()
            with sock:
                sock.settimeout(30)
                self._serve(sock)
        except BaseException as e:  # reported by the test, not lost in the thread
            self.error = e

    def _serve(self, sock: socket.socket) -> None:
        conn = SpdyConnection()
        streams: dict[str, int] = {}
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                if not any(isinstance(e, GoAwayReceived) for e in self.events):
                    raise
                return
            for event in conn.receive_data(chunk):
                self.events.append(event)
                if isinstance(event, StreamOpened):
                    conn.syn_reply(event.stream_id)
                    streams[event.header("streamtype") or ""] = event.stream_id
                elif isinstance(event, StreamEnded) and event.stream_id == streams.get("stdin"):
                    conn.send_data(streams["stdout"], b"hello\r\n")
                    conn.send_data(streams["stdout"], b"", fin=True)
                    conn.send_data(streams["error"], b'{"status":"Success"}', fin=True)
                    conn.send_data(event.stream_id, b"", fin=True)
            try:
                sock.sendall(conn.data_to_send())
            except ConnectionError:
                # After its GOAWAY spdystream reads nothing more and the process may exit with
                # our last bytes unread, which the kernel answers with a reset.
                if not any(isinstance(e, GoAwayReceived) for e in self.events):
                    raise
                return
            if not chunk:
                return

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=30)


@pytest.fixture
def server() -> Iterator[ExecLikeServer]:
    srv = ExecLikeServer()
    try:
        yield srv
    finally:
        srv.close()


def test_spdystream_client_against_our_framer(peer_binary: str, server: ExecLikeServer) -> None:
    run = subprocess.run(
        [peer_binary, "client", server.address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[:5] == [
        "ok reply 1 map[Streamtype:[error]]",
        "ok reply 3 map[Streamtype:[stdin]]",
        "ok reply 5 map[Streamtype:[stdout]]",
        "ok reply 7 map[Streamtype:[resize]]",
        "ok reply 9 map[Port:[80] Requestid:[0] Streamtype:[data] X-Multi:[a b]]",
    ]
    assert "ok ping true" in lines
    assert 'ok read stdout "hello\\r\\n"' in lines
    assert 'ok read error "{\\"status\\":\\"Success\\"}"' in lines
    assert lines[-1] == "ok done"
    server.thread.join(timeout=30)
    assert server.error is None, repr(server.error)
    assert DataReceived(3, b"echo hello\n") in server.events
    assert DataReceived(7, b'{"Width":80,"Height":24}\n') in server.events
    assert GoAwayReceived(0, 0) in server.events
