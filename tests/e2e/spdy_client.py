"""A small SPDY/3.1 client for the streaming tests and the benchmark: the HTTP/1.1 upgrade, the
frames a client sends and receives, and the two Kubernetes protocols on top of them
(remotecommand `v4.channel.k8s.io` for exec/attach, `portforward.k8s.io`).

Why our own: no maintained Python SPDY client exists (CRI-CONTAINERS.md §4.4: `spdy-py` 0.2.0,
2021, is the only one), and a test client must not share the shim's framer (`shim/streaming`),
or it would agree with the server's mistakes. It is deliberately minimal:

- header blocks it sends are zlib streams (one per connection, sync-flushed per frame, as
  SPDY/3 §2.6.10 asks) made *without* the preset dictionary: a valid zlib stream that any
  inflater reads, dictionary or not; header blocks it receives are kept raw and never inflated
  (the tests look at stream ids, data and the error stream, not at reply headers);
- no flow control (the Kubernetes peers ignore WINDOW_UPDATE too), PINGs are echoed;
- one reader thread per connection fills per-stream buffers; callers block on them.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9
)  # fmt: skip
FLAG_FIN = 0x01
RST_CANCEL = 5
REMOTECOMMAND_V4 = "v4.channel.k8s.io"
PORTFORWARD = "portforward.k8s.io"
# What client-go offers for exec/attach, newest first (remotecommand/spdy.go).
EXEC_PROTOCOLS = ("v5.channel.k8s.io", REMOTECOMMAND_V4, "v3.channel.k8s.io",
                  "v2.channel.k8s.io", "channel.k8s.io")  # fmt: skip


# -- frames (pure) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One frame as read from the wire. For control frames `stream_id` is the id the frame
    names (0 for PING/GOAWAY/SETTINGS) and `payload` what follows the fixed fields."""

    control: bool
    kind: int  # control frame type; 0 for DATA
    flags: int
    stream_id: int
    payload: bytes

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def control_frame(kind: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body


def data_frame(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    flags = FLAG_FIN if fin else 0
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


def header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """The uncompressed name/value block: a count, then length-prefixed names and values."""
    pairs = list(headers)
    out = [struct.pack(">I", len(pairs))]
    for name, value in pairs:
        n, v = name.lower().encode(), value.encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


class HeaderCompressor:
    """One zlib context per direction and connection; each frame's block is sync-flushed."""

    def __init__(self) -> None:
        self._z = zlib.compressobj()

    def compress(self, block: bytes) -> bytes:
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)


def syn_stream(
    stream_id: int, headers: Iterable[tuple[str, str]], compressor: HeaderCompressor, fin: bool
) -> bytes:
    body = struct.pack(">IIBB", stream_id, 0, 0, 0) + compressor.compress(header_block(headers))
    return control_frame(SYN_STREAM, FLAG_FIN if fin else 0, body)


def rst_stream(stream_id: int, status: int = RST_CANCEL) -> bytes:
    return control_frame(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def ping(ping_id: int) -> bytes:
    return control_frame(PING, 0, struct.pack(">I", ping_id))


def goaway(last_stream_id: int = 0, status: int = 0) -> bytes:
    return control_frame(GOAWAY, 0, struct.pack(">II", last_stream_id, status))


class FrameReader:
    """Bytes in, frames out."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            first, length_word = struct.unpack_from(">II", self._buf)
            length = length_word & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8 : 8 + length])
            flags = length_word >> 24
            del self._buf[: 8 + length]
            if first & 0x80000000:
                kind = first & 0xFFFF
                named = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF if length >= 4 else 0
                if kind in (PING, GOAWAY, SETTINGS):
                    stream_id, rest = 0, payload
                else:
                    stream_id, rest = named, payload[4:]
                frames.append(Frame(True, kind, flags, stream_id, rest))
            else:
                frames.append(Frame(False, 0, flags, first & 0x7FFFFFFF, payload))
        return frames


# -- the HTTP upgrade ---------------------------------------------------------------------------


@dataclass
class UpgradeResponse:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes  # bytes read after the head (the first frames, or an error body)


class UpgradeRefused(Exception):
    def __init__(self, response: UpgradeResponse) -> None:
        super().__init__(f"upgrade refused: HTTP {response.status} {response.body[:200]!r}")
        self.response = response


def connect(url: str, timeout: float) -> tuple[socket.socket, str]:
    """A TCP connection to the URL's host and port (TLS for https, the certificate not checked:
    kubelet's is self-signed); returns it with the request target."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
        raise ValueError(f"not an absolute http(s)://host:port/ URL: {url!r}")
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname=parts.hostname)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return sock, target


def read_head(sock: socket.socket, limit: int = 65536) -> UpgradeResponse:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full response head: {buf!r}")
        buf += chunk
        if len(buf) > limit:
            raise ConnectionError("response head too long")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return UpgradeResponse(status, headers, rest)


def upgrade_request(
    target: str, host: str, protocols: Iterable[str], method: str = "POST"
) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {host}",
        "Connection: Upgrade",
        "Upgrade: SPDY/3.1",
        *(f"X-Stream-Protocol-Version: {p}" for p in protocols),
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- a connection -------------------------------------------------------------------------------


@dataclass
class Stream:
    stream_id: int
    headers: list[tuple[str, str]]
    data: bytearray = field(default_factory=bytearray)
    replied: bool = False
    remote_closed: bool = False  # FIN or RST from the server
    reset: bool = False


class SpdyConnection:
    """An upgraded connection. Streams are opened by us (odd ids); a reader thread collects
    what the server sends until it closes the connection."""

    def __init__(self, sock: socket.socket, protocol: str, early: bytes = b"") -> None:
        self.sock = sock
        self.protocol = protocol
        self._compressor = HeaderCompressor()
        self._reader = FrameReader()
        self._next_id = 1
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self.streams: dict[int, Stream] = {}
        self.closed = False  # the server closed the TCP connection (or it broke)
        self.goaway = False
        self.frames_received = 0
        # An SSL object must not be read and written by two threads at once: over TLS (kubelet)
        # the caller's thread reads, inside `wait`; over plain TCP a reader thread does.
        self._thread: threading.Thread | None = None
        if isinstance(sock, ssl.SSLSocket):
            self._dispatch(self._reader.feed(early))
        else:
            sock.settimeout(None)
            self._thread = threading.Thread(target=self._read_loop, args=(early,), daemon=True)
            self._thread.start()

    @classmethod
    def open(
        cls, url: str, protocols: Iterable[str], method: str = "POST", timeout: float = 10
    ) -> SpdyConnection:
        sock, target = connect(url, timeout)
        try:
            host = urllib.parse.urlsplit(url).netloc
            sock.sendall(upgrade_request(target, host, protocols, method))
            response = read_head(sock)
            if response.status != 101:
                raise UpgradeRefused(response)
            chosen = response.headers.get("x-stream-protocol-version", "")
            return cls(sock, chosen, response.body)
        except BaseException:
            sock.close()
            raise

    # -- sending --

    def send_raw(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(data)

    def open_stream(self, headers: list[tuple[str, str]], fin: bool = False) -> Stream:
        with self._send_lock:
            stream_id = self._next_id
            self._next_id += 2
            stream = Stream(stream_id, headers)
            with self._cond:
                self.streams[stream_id] = stream
            self.sock.sendall(syn_stream(stream_id, headers, self._compressor, fin))
        return stream

    def send_data(self, stream: Stream, data: bytes, fin: bool = False) -> None:
        # A DATA frame's length is 24 bits: large writes go out in chunks.
        with self._send_lock:
            view = memoryview(data)
            step = 0xFFFF
            while len(view) > step:
                self.sock.sendall(data_frame(stream.stream_id, bytes(view[:step])))
                view = view[step:]
            self.sock.sendall(data_frame(stream.stream_id, bytes(view), fin))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- receiving --

    def _read_loop(self, early: bytes) -> None:
        try:
            frames = self._reader.feed(early)
            while True:
                self._dispatch(frames)
                chunk = self.sock.recv(262144)
                if not chunk:
                    break
                frames = self._reader.feed(chunk)
        except OSError:
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def _dispatch(self, frames: list[Frame]) -> None:
        for frame in frames:
            if frame.control and frame.kind == PING:
                self.send_raw(control_frame(PING, 0, frame.payload))
            with self._cond:
                self.frames_received += 1
                stream = self.streams.get(frame.stream_id)
                if frame.control and frame.kind == GOAWAY:
                    self.goaway = True
                elif stream is not None:
                    if not frame.control:
                        stream.data += frame.payload
                    elif frame.kind == SYN_REPLY:
                        stream.replied = True
                    elif frame.kind == RST_STREAM:
                        stream.reset = True
                        stream.remote_closed = True
                    if frame.fin:
                        stream.remote_closed = True
                self._cond.notify_all()

    def wait(self, what: str, done: Any, timeout: float) -> None:
        """Block until `done()` is true, or raise TimeoutError naming `what`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
                if self._thread is not None:
                    self._cond.wait(left)
                elif self.closed:
                    raise ConnectionError(f"the connection closed before {what}")
                else:
                    self._read_once(min(left, 1.0))

    def _read_once(self, timeout: float) -> None:
        """Without a reader thread: read what comes within `timeout` and dispatch it."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(262144)
        except TimeoutError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self._dispatch(self._reader.feed(chunk))

    def wait_closed(self, timeout: float) -> None:
        self.wait("the server to close the connection", lambda: self.closed, timeout)

    def take(self, stream: Stream, size: int = -1) -> bytes:
        """What arrived on `stream` so far (up to `size` bytes), removed from its buffer."""
        with self._cond:
            n = len(stream.data) if size < 0 else min(size, len(stream.data))
            out = bytes(stream.data[:n])
            del stream.data[:n]
            return out


# -- remotecommand (exec, attach) ---------------------------------------------------------------


@dataclass
class ExecResult:
    stdout: bytes
    stderr: bytes
    status: dict[str, Any]  # the v4 status JSON from the error stream ({} when none came)
    protocol: str

    @property
    def exit_code(self) -> int:
        """0 for Success, the NonZeroExitCode cause for a failure (client-go's v4 rule)."""
        if self.status.get("status") == "Success":
            return 0
        for cause in self.status.get("details", {}).get("causes", []):
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
        raise ValueError(f"no exit code in status {self.status!r}")


@dataclass
class RemoteCommand:
    """The streams of one exec/attach session, opened in client-go's order: error first."""

    conn: SpdyConnection
    error: Stream
    stdin: Stream | None
    stdout: Stream | None
    stderr: Stream | None
    resize: Stream | None

    @classmethod
    def start(
        cls,
        url: str,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        tty: bool = False,
        protocols: Iterable[str] = EXEC_PROTOCOLS,
        timeout: float = 10,
    ) -> RemoteCommand:
        conn = SpdyConnection.open(url, protocols, timeout=timeout)
        try:

            def open_kind(kind: str, wanted: bool) -> Stream | None:
                return conn.open_stream([("streamtype", kind)]) if wanted else None

            error = conn.open_stream([("streamtype", "error")])
            return cls(
                conn,
                error,
                open_kind("stdin", stdin),
                open_kind("stdout", stdout),
                open_kind("stderr", stderr and not tty),
                open_kind("resize", tty),
            )
        except BaseException:
            conn.close()
            raise

    def write_stdin(self, data: bytes, eof: bool = False) -> None:
        assert self.stdin is not None
        self.conn.send_data(self.stdin, data, fin=eof)

    def resize_to(self, width: int, height: int) -> None:
        assert self.resize is not None
        body = json.dumps({"Width": width, "Height": height}).encode() + b"\n"
        self.conn.send_data(self.resize, body)

    def wait_output(self, needle: bytes, timeout: float) -> None:
        stream = self.stdout
        assert stream is not None
        self.conn.wait(
            f"{needle!r} on stdout",
            lambda: needle in stream.data or self.conn.closed,
            timeout,
        )
        if needle not in stream.data:
            raise ConnectionError(f"closed before {needle!r} came; stdout: {bytes(stream.data)!r}")

    def finish(self, timeout: float) -> ExecResult:
        """Wait for the end of the session (the error stream closed or the connection gone),
        then return what came."""
        err = self.error
        # One TCP connection keeps order: the output the server wrote before the status is
        # in the buffers once the error stream has ended.
        self.conn.wait(
            "the end of the session", lambda: err.remote_closed or self.conn.closed, timeout
        )
        raw = bytes(err.data)
        status: dict[str, Any] = json.loads(raw) if raw.strip() else {}
        result = ExecResult(
            bytes(self.stdout.data) if self.stdout else b"",
            bytes(self.stderr.data) if self.stderr else b"",
            status,
            self.conn.protocol,
        )
        self.conn.close()
        return result


def run_command(
    url: str, stdin: bytes | None = None, timeout: float = 30, **kwargs: Any
) -> ExecResult:
    """One whole non-interactive session: open, send stdin (then EOF), collect, finish."""
    session = RemoteCommand.start(url, stdin=stdin is not None, **kwargs)
    try:
        if stdin is not None:
            session.write_stdin(stdin, eof=True)
        return session.finish(timeout)
    finally:
        session.conn.close()


# -- portforward.k8s.io -------------------------------------------------------------------------


@dataclass
class ForwardedPort:
    """One port-forward request (a data and an error stream sharing a request id)."""

    conn: SpdyConnection
    data: Stream
    error: Stream

    def send(self, payload: bytes, eof: bool = False) -> None:
        self.conn.send_data(self.data, payload, fin=eof)

    def recv_until(self, predicate: Any, timeout: float) -> bytes:
        """Wait until predicate(received so far) holds or the data stream ends; return all."""
        data = self.data
        self.conn.wait(
            "port-forward data",
            lambda: predicate(bytes(data.data)) or data.remote_closed or self.conn.closed,
            timeout,
        )
        return bytes(data.data)

    def error_text(self) -> str:
        return bytes(self.error.data).decode(errors="replace")

    def wait_error(self, timeout: float) -> str:
        """Until the server ends the error stream (or the data stream, or the connection);
        what it wrote there."""
        error, data = self.error, self.data
        self.conn.wait(
            "the port-forward error stream to end",
            lambda: error.remote_closed or data.remote_closed or self.conn.closed,
            timeout,
        )
        return self.error_text()


class PortForwardConnection:
    def __init__(self, url: str, timeout: float = 10) -> None:
        self.conn = SpdyConnection.open(url, [PORTFORWARD], timeout=timeout)
        self._request_id = 0

    def forward(self, port: int) -> ForwardedPort:
        """client-go's order: the error stream first, half-closed at once (the client never
        writes to it), then the data stream."""
        rid = str(self._request_id)
        self._request_id += 1
        common = [("port", str(port)), ("requestid", rid)]
        error = self.conn.open_stream([("streamtype", "error"), *common], fin=True)
        data = self.conn.open_stream([("streamtype", "data"), *common])
        return ForwardedPort(self.conn, data, error)

    def close(self) -> None:
        self.conn.close()
