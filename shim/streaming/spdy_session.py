"""Exec, attach and port-forward over SPDY/3.1 (CRI-CONTAINERS.md §4.2): the I/O loop around
the sans-IO framer in `shim.streaming.spdy`.

The connection's thread reads and feeds the framer; pump threads (Docker's output, a pod's
connection) write. `SpdyMux` is the one place the framer is touched, under a lock, and its
queued bytes go out under a second lock, so frames leave in the order they were queued while
no reader waits for a slow write longer than one send.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import docker

from shim.engine.stdcopy import Stream
from shim.streaming import negotiate
from shim.streaming.link import send_within, set_io_timeouts
from shim.streaming.netns_dial import CONNECT_TIMEOUT, NetnsSocketFactory, dial
from shim.streaming.remotecommand import RemoteCommandSession, ResizeDecoder
from shim.streaming.request_cache import AttachTarget, ExecTarget, PortForwardTarget, StreamTarget
from shim.streaming.spdy import (
    DataReceived,
    GoAwayReceived,
    GoAwayStatus,
    RstStatus,
    SpdyConnection,
    SpdyError,
    SpdyProtocolError,
    StreamClosedError,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from shim.streaming.spdy.events import Event

log = logging.getLogger(__name__)

# kubelet's library waits this long for the client to open all the streams it announced.
STREAM_CREATION_TIMEOUT = 30.0
# Stdin (or a pod connection's data) that arrives before its destination is ready.
MAX_EARLY_BYTES = 1 << 20
# Forwarded connections open at once on one port-forward session (each is two streams).
MAX_PAIRS = 48
READ_SIZE = 256 * 1024


class ByteLink(Protocol):
    """The upgraded connection: a socket (`link.SocketLink`) or WebSocket messages
    (`ws_tunnel.TunnelLink`)."""

    def recv(self) -> bytes: ...
    def sendall(self, data: bytes) -> None: ...
    def finish_soon(self) -> None: ...
    def expire_at(self, deadline: float | None) -> None: ...
    def close(self) -> None: ...


class SpdyMux:
    def __init__(self, link: ByteLink) -> None:
        self.link = link
        self._conn = SpdyConnection()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.finished = False

    def receive(self, data: bytes) -> list[Event]:
        with self._lock:
            events = self._conn.receive_data(data)
        self.flush()
        return events

    def reply(self, stream_id: int) -> None:
        with self._lock:
            self._conn.syn_reply(stream_id)
        self.flush()

    def send(self, stream_id: int, data: bytes, fin: bool = False) -> bool:
        """Queue and send; False when the stream is gone (the write is dropped)."""
        try:
            with self._lock:
                self._conn.send_data(stream_id, data, fin)
        except StreamClosedError:
            return False
        self.flush()
        return True

    def reset(self, stream_id: int, status: RstStatus = RstStatus.CANCEL) -> None:
        with self._lock:
            self._conn.rst_stream(stream_id, status)
        with contextlib.suppress(OSError):
            self.flush()

    def end(self, status: GoAwayStatus = GoAwayStatus.OK) -> None:
        """GOAWAY, flush, and let the peer hang up (once)."""
        with self._lock:
            if self.finished:
                return
            self.finished = True
            self._conn.go_away(status)
        with contextlib.suppress(OSError):
            self.flush()
        self.link.finish_soon()

    def flush(self) -> None:
        with self._send_lock:
            with self._lock:
                out = self._conn.data_to_send()
            if out:
                self.link.sendall(out)


class _Handler(Protocol):
    def on_event(self, event: Event) -> None: ...
    def close(self) -> None: ...


def serve(
    link: ByteLink,
    protocol: str,
    client: docker.APIClient,
    dialer: NetnsSocketFactory,
    target: StreamTarget,
) -> None:
    mux = SpdyMux(link)
    handler: _Handler
    if isinstance(target, PortForwardTarget):
        handler = _PortForward(mux, dialer, target)
    else:
        handler = _RemoteCommand(mux, client, target, protocol)
    try:
        while True:
            data = link.recv()
            try:
                events = mux.receive(data)
            except SpdyProtocolError as err:
                log.info("spdy %s: closed on a protocol error: %s", protocol, err)
                mux.end(err.goaway_status)
                return
            for event in events:
                handler.on_event(event)
            if not data:
                return
    except (OSError, SpdyError) as err:
        log.debug("spdy %s: connection ended: %s", protocol, err)
    finally:
        handler.close()
        mux.end()


class _RemoteCommand:
    """Streams by `streamtype`: error, stdin, stdout, stderr, resize; the session starts once
    every stream the request implies is open."""

    def __init__(
        self,
        mux: SpdyMux,
        client: docker.APIClient,
        target: ExecTarget | AttachTarget,
        protocol: str,
    ) -> None:
        self._mux = mux
        self._target = target
        self._streams: dict[str, int] = {}
        self._by_id: dict[int, str] = {}
        wanted = {"error"}
        wanted |= {name for name, on in (("stdin", target.stdin), ("stdout", target.stdout),
                   ("stderr", target.stderr)) if on}  # fmt: skip
        if target.tty and protocol not in (negotiate.V1, "v2.channel.k8s.io"):
            wanted.add("resize")
        self._wanted = wanted
        # A client that never opens its streams is dropped (recv returns b"" past this).
        mux.link.expire_at(time.monotonic() + STREAM_CREATION_TIMEOUT)
        self._session = RemoteCommandSession(
            client, target, self, negotiate.structured_status(protocol)
        )
        self._started = False
        self._early: list[tuple[str, bytes | None]] = []
        self._early_bytes = 0
        self._resize = ResizeDecoder()

    # Output, as the session writes it.
    def write(self, stream: Stream, data: bytes) -> None:
        name = "stderr" if stream is Stream.STDERR else "stdout"
        sid = self._streams.get(name)
        if sid is not None:
            self._mux.send(sid, data)

    def finish(self, error_payload: bytes) -> None:
        for name in ("stdout", "stderr"):
            sid = self._streams.get(name)
            if sid is not None:
                self._mux.send(sid, b"", fin=True)
        sid = self._streams.get("error")
        if sid is not None:
            self._mux.send(sid, error_payload, fin=True)
        self._mux.end()

    def drop(self) -> None:
        self._mux.link.close()

    def on_event(self, event: Event) -> None:
        if isinstance(event, StreamOpened):
            kind = event.header("streamtype") or ""
            if kind not in ("error", "stdin", "stdout", "stderr", "resize") or (
                kind in self._streams
            ):
                self._mux.reset(event.stream_id, RstStatus.REFUSED_STREAM)
                return
            self._streams[kind] = event.stream_id
            self._by_id[event.stream_id] = kind
            self._mux.reply(event.stream_id)
            if not self._started and self._wanted <= set(self._streams):
                self._start()
        elif isinstance(event, DataReceived):
            self._input(self._by_id.get(event.stream_id, ""), event.data)
        elif isinstance(event, StreamEnded):
            if self._by_id.get(event.stream_id) == "stdin":
                self._input("stdin", None)
        elif isinstance(event, GoAwayReceived):
            pass  # the client opens nothing more; the session goes on

    def _input(self, kind: str, data: bytes | None) -> None:
        if kind not in ("stdin", "resize"):
            return
        if not self._started:
            self._early_bytes += len(data or b"")
            if self._early_bytes > MAX_EARLY_BYTES:
                raise SpdyProtocolError("too much input before the streams were all open")
            self._early.append((kind, data))
            return
        if kind == "resize":
            for width, height in self._resize.feed(data or b""):
                self._session.resize(width, height)
        elif data is None:
            self._session.stdin_eof()
        else:
            self._session.stdin(data)

    def _start(self) -> None:
        self._mux.link.expire_at(None)
        self._session.start()
        self._started = True
        early, self._early = self._early, []
        for kind, data in early:
            self._input(kind, data)

    def close(self) -> None:
        self._session.abort()


@dataclass
class _Pair:
    """One forwarded connection: its error and data streams, then the pod's socket."""

    request_id: str
    port: int = 0
    error_id: int = 0
    data_id: int = 0
    sock: socket.socket | None = None
    early: list[bytes] = field(default_factory=list)
    early_bytes: int = 0
    client_done: bool = False
    pump: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False
    settled: threading.Event = field(default_factory=threading.Event)  # dialled or failed


class _PortForward:
    """Stream pairs by `requestid` (`streamtype` error and data, `port`); a complete pair is
    dialled in the pod's network namespace and spliced."""

    def __init__(self, mux: SpdyMux, dialer: NetnsSocketFactory, target: PortForwardTarget):
        self._mux = mux
        self._dialer = dialer
        self._target = target
        self._pairs: dict[str, _Pair] = {}
        self._by_id: dict[int, _Pair] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # the two maps: the pumps forget their pairs

    def on_event(self, event: Event) -> None:
        if isinstance(event, StreamOpened):
            self._opened(event)
        elif isinstance(event, DataReceived):
            pair = self._by_id.get(event.stream_id)
            if pair is not None and event.stream_id == pair.data_id:
                self._to_pod(pair, event.data)
        elif isinstance(event, StreamEnded):
            pair = self._by_id.get(event.stream_id)
            if pair is not None and event.stream_id == pair.data_id:
                with pair.lock:
                    pair.client_done = True
                    if pair.sock is not None:
                        with contextlib.suppress(OSError):
                            pair.sock.shutdown(socket.SHUT_WR)
        elif isinstance(event, StreamReset):
            pair = self._by_id.get(event.stream_id)
            if pair is not None:
                self._drop(pair)

    def _opened(self, event: StreamOpened) -> None:
        kind = event.header("streamtype")
        request_id = event.header("requestid") or ""
        port_text = event.header("port") or ""
        if kind not in ("error", "data") or not request_id:
            self._mux.reset(event.stream_id, RstStatus.REFUSED_STREAM)
            return
        pair = self._pairs.get(request_id)
        if pair is None:
            if len(self._pairs) >= MAX_PAIRS:
                self._mux.reset(event.stream_id, RstStatus.REFUSED_STREAM)
                return
            with self._lock:
                pair = self._pairs[request_id] = _Pair(request_id)
        if (kind == "error" and pair.error_id) or (kind == "data" and pair.data_id):
            self._mux.reset(event.stream_id, RstStatus.PROTOCOL_ERROR)
            return
        if kind == "error":
            pair.error_id = event.stream_id
        else:
            pair.data_id = event.stream_id
        with self._lock:
            self._by_id[event.stream_id] = pair
        self._mux.reply(event.stream_id)
        try:
            port = int(port_text)
        except ValueError:
            port = 0
        pair.port = pair.port or port
        if pair.error_id and pair.data_id:
            if not 0 < pair.port <= 65535:
                self._fail(pair, f"invalid port {port_text!r} in the port-forward request")
                return
            thread = threading.Thread(
                target=self._connect, args=(pair,), name="spdy-port-forward", daemon=True
            )
            pair.pump = thread
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _connect(self, pair: _Pair) -> None:
        try:
            sock = dial(self._dialer, self._target.netns_path, pair.port)
        except OSError as err:
            with pair.lock:
                pair.closed = True
            pair.settled.set()
            self._fail(
                pair,
                f"failed to forward port {pair.port} of pod sandbox {self._target.sandbox_id}: "
                f"{err}",
            )
            self._forget(pair)
            return
        set_io_timeouts(sock)  # a pod that stops reading fails the write, not the session
        with pair.lock:
            if pair.closed:
                sock.close()
                pair.settled.set()
                return
            pair.sock = sock
            pair.settled.set()
            early, pair.early = pair.early, []
            try:
                for data in early:
                    send_within(sock, data)
                if pair.client_done:
                    sock.shutdown(socket.SHUT_WR)
            except OSError as err:
                log.debug("port-forward %s: %s", pair.request_id, err)
        self._pump(pair, sock)

    def _pump(self, pair: _Pair, sock: socket.socket) -> None:
        try:
            while True:
                try:
                    data = sock.recv(READ_SIZE)
                except (BlockingIOError, TimeoutError, InterruptedError):
                    if pair.closed:
                        break
                    continue
                if not data:
                    break
                if not self._mux.send(pair.data_id, data):
                    break
            self._mux.send(pair.data_id, b"", fin=True)
            self._mux.send(pair.error_id, b"", fin=True)
        except OSError as err:
            # A failed write to the client: a stalled client holds up every pair, so it goes.
            log.info("port-forward %s to port %d: dropped the client: %s", pair.request_id,
                     pair.port, err)  # fmt: skip
            self._mux.link.close()
        finally:
            with pair.lock:
                pair.closed = True
                pair.sock = None
            sock.close()
            self._forget(pair)

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            if self._pairs.get(pair.request_id) is pair:
                del self._pairs[pair.request_id]
            for sid in (pair.error_id, pair.data_id):
                if self._by_id.get(sid) is pair:
                    del self._by_id[sid]

    def _to_pod(self, pair: _Pair, data: bytes) -> None:
        with pair.lock:
            if pair.closed:
                return
            early = pair.sock is None
            if early and pair.early_bytes + len(data) <= MAX_EARLY_BYTES:
                pair.early_bytes += len(data)
                pair.early.append(data)
                return
        if early:
            # Backpressure: the client sends faster than the pod connection is made; the
            # reader waits for the dial (as the client's own writes would on a socket).
            if not pair.settled.wait(CONNECT_TIMEOUT + 1):
                self._drop(pair)
                return
            with pair.lock:
                if pair.closed or pair.sock is None:
                    return
        with pair.lock:
            sock = pair.sock
            if sock is None:
                return
        try:
            send_within(sock, data)
        except OSError as err:
            log.debug("port-forward %s: the pod's side failed: %s", pair.request_id, err)
            self._drop(pair)

    def _fail(self, pair: _Pair, message: str) -> None:
        log.info("port-forward to pod sandbox %s: %s", self._target.sandbox_id, message)
        self._mux.send(pair.error_id, message.encode(), fin=True)
        self._mux.send(pair.data_id, b"", fin=True)

    def _drop(self, pair: _Pair) -> None:
        with pair.lock:
            pair.closed = True
            sock = pair.sock
        if sock is not None:  # its pump closes it and forgets the pair
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        else:
            self._forget(pair)
        self._mux.reset(pair.data_id)
        self._mux.reset(pair.error_id)

    def close(self) -> None:
        for pair in list(self._pairs.values()):
            with pair.lock:
                pair.closed = True
                sock = pair.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=10)
