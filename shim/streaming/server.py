"""The streaming server: one HTTP/1.1 listener (h11) for the URLs Exec, Attach and
PortForward hand out, upgraded to SPDY/3.1 or WebSocket (wsproto).

Concurrency: a thread per connection, at most MAX_CONNECTIONS at once (more are answered 503
without a thread), plus one pump thread per Docker or pod connection a session copies from.
Everything blocks on sockets with timeouts; nothing here touches the gRPC server's threads.
The single hand-off between the two is the `RequestCache`: an RPC (gRPC thread) stores a
validated request under a token, a connection (our thread) takes it out.

Hostile input ends the connection, never the server: the request head is bounded in size
(MAX_HEAD) and in time (HANDSHAKE_TIMEOUT), each protocol's framer bounds its buffers, writes
to a peer that does not read time out (link.SEND_TIMEOUT), and an unexpected exception in one
connection's thread is logged and closes that connection only.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time

import docker
import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request

from shim.streaming import (
    negotiate,
    spdy_session,
    urls,
    ws_port_forward,
    ws_remotecommand,
    ws_tunnel,
)
from shim.streaming.link import SocketLink
from shim.streaming.netns_dial import NetnsSocketFactory
from shim.streaming.request_cache import (
    AttachTarget,
    ExecTarget,
    PortForwardTarget,
    RequestCache,
    StreamTarget,
)
from shim.streaming.ws_link import WebSocketLink

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 256
MAX_HEAD = 16 * 1024
HANDSHAKE_TIMEOUT = 10.0
JOIN_TIMEOUT = 10.0

_VERB_OF = {ExecTarget: "exec", AttachTarget: "attach", PortForwardTarget: "portforward"}


class StreamingServer:
    def __init__(
        self,
        bind_addr: str,
        client: docker.APIClient,
        cache: RequestCache | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._bind = urls.parse_bind_addr(bind_addr)
        self.client = client
        self.cache = cache or RequestCache()
        self.dialer = NetnsSocketFactory()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._closed = False
        self.base_url = ""
        self.address: tuple[str, int] = ("", 0)

    def start(self) -> None:
        host, port = self._bind
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host or "0.0.0.0", port))
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        bound_port = listener.getsockname()[1]
        self.address = (host, bound_port)
        self.base_url = urls.base_url(urls.advertised_host(host), bound_port)
        self._acceptor = threading.Thread(target=self._accept, name="stream-accept", daemon=True)
        self._acceptor.start()
        log.info("streaming server listening on %s:%d (URLs %s)", host, bound_port, self.base_url)

    def url(self, verb: str, token: str) -> str:
        return f"{self.base_url}{verb}/{token}"

    def close(self) -> None:
        """Stop accepting, end every connection, wait for their threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            listener = self._listener
            connections = dict(self._connections)
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._acceptor is not None:
            self._acceptor.join(JOIN_TIMEOUT)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        self.dialer.close()

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError as err:
                if self._closed:
                    return
                if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("streaming server cannot accept: %s", err)
                    time.sleep(0.1)
                continue
            if not self._slots.acquire(blocking=False):
                _refuse(sock, 503, "too many streaming connections")
                continue
            thread = threading.Thread(
                target=self._serve, args=(sock,), name="stream-conn", daemon=True
            )
            with self._lock:
                if self._closed:
                    self._slots.release()
                    sock.close()
                    return
                self._connections[sock] = thread
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            self._handle(sock)
        except Exception:
            log.exception("streaming connection failed unexpectedly")
        finally:
            with self._lock:
                self._connections.pop(sock, None)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            self._slots.release()

    def _handle(self, sock: socket.socket) -> None:
        head = _read_head(sock)
        if head is None:
            return
        raw, rest = head
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            conn.receive_data(raw)
            event = conn.next_event()
        except h11.RemoteProtocolError as err:
            _refuse(sock, 400, f"bad request: {err}")
            return
        if not isinstance(event, h11.Request):
            _refuse(sock, 400, "bad request")
            return
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers]
        target_path = event.target.decode("latin-1")
        if event.method not in (b"GET", b"POST"):
            _refuse(sock, 405, f"method {event.method.decode('latin-1')} not allowed")
            return
        route = negotiate.parse_route(target_path)
        if route is None:
            _refuse(sock, 404, f"no such streaming URL {target_path[:200]}")
            return
        target = self.cache.consume(route.token)
        if target is None or _VERB_OF[type(target)] != route.verb:
            _refuse(sock, 404, f"unknown or used streaming token {route.token!r}")
            return
        transport = negotiate.transport_of(headers)
        if transport is negotiate.Transport.SPDY:
            self._spdy(sock, conn, headers, route.verb, target, rest)
        elif transport is negotiate.Transport.WEBSOCKET:
            self._websocket(sock, raw, route.verb, target, rest)
        else:
            _refuse(sock, 400, "expected an upgrade to SPDY/3.1 or websocket")

    def _spdy(
        self,
        sock: socket.socket,
        conn: h11.Connection,
        headers: list[tuple[str, str]],
        verb: str,
        target: StreamTarget,
        rest: bytes,
    ) -> None:
        offers = negotiate.header_values(headers, negotiate.PROTOCOL_HEADER)
        supported = negotiate.spdy_protocols(verb)
        if not offers:
            _refuse(sock, 400, "unable to upgrade: X-Stream-Protocol-Version is required")
            return
        protocol = negotiate.choose(offers, supported)
        if protocol is None:
            _refuse(
                sock,
                403,
                f"unable to upgrade: unable to negotiate protocol: client supports {offers}, "
                f"server supports {list(supported)}",
                [(negotiate.ACCEPTED_HEADER, ", ".join(supported))],
            )
            return
        response = conn.send(
            h11.InformationalResponse(
                status_code=101,
                headers=[
                    ("Connection", "Upgrade"),
                    ("Upgrade", "SPDY/3.1"),
                    ("X-Stream-Protocol-Version", protocol),
                ],
            )
        )
        sock.settimeout(HANDSHAKE_TIMEOUT)
        sock.sendall(response or b"")
        spdy_session.serve(SocketLink(sock, rest), protocol, self.client, self.dialer, target)

    def _websocket(
        self, sock: socket.socket, raw: bytes, verb: str, target: StreamTarget, rest: bytes
    ) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(raw)
            events = list(ws.events())
        except Exception as err:  # wsproto raises RemoteProtocolError on a bad handshake
            _refuse(sock, 400, f"bad websocket handshake: {err}")
            return
        request = next((e for e in events if isinstance(e, Request)), None)
        if request is None:
            _refuse(sock, 400, "bad websocket handshake")
            return
        supported = negotiate.websocket_protocols(verb)
        protocol = negotiate.choose(request.subprotocols, supported)
        if protocol is None and request.subprotocols:
            body = (
                f"none of the offered websocket subprotocols {request.subprotocols} is "
                f"supported; supported: {list(supported)}"
            ).encode()
            out = ws.send(RejectConnection(status_code=400, has_body=True, headers=[
                (b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())
            ]))  # fmt: skip
            out += ws.send(RejectData(data=body, body_finished=True))
            with contextlib.suppress(OSError):
                sock.settimeout(HANDSHAKE_TIMEOUT)
                sock.sendall(out)
            return
        sock.settimeout(HANDSHAKE_TIMEOUT)
        sock.sendall(ws.send(AcceptConnection(subprotocol=protocol)))
        link = WebSocketLink(SocketLink(sock, rest), ws)
        chosen = protocol or negotiate.V1
        if isinstance(target, PortForwardTarget):
            if chosen == negotiate.SPDY_TUNNEL:
                spdy_session.serve(
                    ws_tunnel.TunnelLink(link), negotiate.PORT_FORWARD, self.client,
                    self.dialer, target,
                )  # fmt: skip
                return
            ws_port_forward.serve(link, chosen, self.dialer, target)
        else:
            ws_remotecommand.serve(link, chosen, self.client, target)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """The request head (through the blank line) and what followed it; None (connection
    answered or dropped) if it is too big, too slow or never comes."""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    buffer = b""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if 0 <= end <= MAX_HEAD:
            return buffer[: end + 4], buffer[end + 4 :]
        if len(buffer) > MAX_HEAD:
            _refuse(sock, 431, "request header fields too large")
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _refuse(sock, 408, "request head not received in time")
            return None
        sock.settimeout(remaining)
        try:
            data = sock.recv(MAX_HEAD)
        except TimeoutError:
            _refuse(sock, 408, "request head not received in time")
            return None
        except OSError:
            return None
        if not data:
            return None
        buffer += data


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def _refuse(
    sock: socket.socket, code: int, message: str, extra: list[tuple[str, str]] | None = None
) -> None:
    """A plain-text error answer, then the connection is closed by the caller (or here, for
    connections that never got a thread)."""
    body = (message + "\n").encode()
    head = [f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}"]
    head += [f"{k}: {v}" for k, v in extra or []]
    head += ["Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}"]
    head += ["Connection: close", "", ""]
    with contextlib.suppress(OSError):
        sock.settimeout(2.0)
        sock.sendall("\r\n".join(head).encode() + body)
    if code == 503:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
