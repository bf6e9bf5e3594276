"""The HTTP/1.1 the etcd client needs: one request per connection, over TCP or TLS, on asyncio.

h11 does the HTTP parsing (sans-IO); this module only moves bytes between it and an asyncio
stream. Each connection carries a single exchange and is closed after it: the daemon makes a
few calls a minute, so pooling would buy nothing and bring the stale-connection retry problem
(a txn must never be sent twice) with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from overlay.store.kv import StoreError

READ_SIZE = 65536


class TransportError(Exception):
    """The connection failed or broke: the next endpoint may do better."""


@dataclass(frozen=True)
class Endpoint:
    """An etcd client URL, `http://host:port` or `https://host:port`."""

    url: str
    tls: bool
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid etcd endpoint {url!r}: want http(s)://host:port")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"invalid etcd endpoint {url!r}: a client URL has no path")
        try:
            port = parts.port or 2379
        except ValueError as err:
            raise ValueError(f"invalid etcd endpoint {url!r}: {err}") from err
        return cls(url=url.strip(), tls=parts.scheme == "https", host=parts.hostname, port=port)

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _keep_alive(sock: socket.socket | None, seconds: int) -> None:
    # A watch is silent for hours; TCP keepalive (and the user timeout for unacknowledged
    # data) notices a peer that vanished without closing, e.g. a partitioned node.
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, seconds)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, seconds // 3))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, seconds * 2000)


class HTTPConnection:
    """One request and its response on a fresh connection; `close()` ends it."""

    def __init__(
        self, endpoint: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ):
        self.endpoint = endpoint
        self._reader = reader
        self._writer = writer
        self._http = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(
        cls, endpoint: Endpoint, ssl_context: ssl.SSLContext | None, keepalive: int
    ) -> HTTPConnection:
        if endpoint.tls and ssl_context is None:
            raise TransportError(f"{endpoint.url}: https endpoint without a TLS context")
        try:
            reader, writer = await asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=ssl_context if endpoint.tls else None,
                server_hostname=endpoint.host if endpoint.tls else None,
            )
        except (OSError, ssl.SSLError) as err:
            raise TransportError(f"cannot connect to {endpoint.url}: {err}") from err
        _keep_alive(writer.get_extra_info("socket"), keepalive)
        return cls(endpoint, reader, writer)

    async def send(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        request = h11.Request(
            method=method,
            target=target,
            headers=[
                ("Host", self.endpoint.authority),
                ("Content-Length", str(len(body))),
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
                *headers,
            ],
        )
        data = self._http.send(request) or b""
        if body:
            data += self._http.send(h11.Data(data=body)) or b""
        data += self._http.send(h11.EndOfMessage()) or b""
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as err:
            raise TransportError(f"cannot send to {self.endpoint.url}: {err}") from err

    async def _next_event(self) -> h11.Event:
        while True:
            try:
                event = self._http.next_event()
            except h11.RemoteProtocolError as err:
                raise TransportError(f"bad HTTP from {self.endpoint.url}: {err}") from err
            if event is h11.PAUSED:  # a second response on a connection that carries one
                raise TransportError(f"{self.endpoint.url} sent more than one response")
            if event is not h11.NEED_DATA:
                assert not isinstance(event, type)
                return event
            try:
                data = await self._reader.read(READ_SIZE)
            except (OSError, ssl.SSLError) as err:
                raise TransportError(f"connection to {self.endpoint.url} broke: {err}") from err
            self._http.receive_data(data)

    async def response(self) -> int:
        """The response's status code (headers are not needed)."""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                return event.status_code
            if isinstance(event, h11.ConnectionClosed):
                raise TransportError(f"{self.endpoint.url} closed the connection")

    async def chunk(self) -> bytes | None:
        """The next piece of the body as it arrives, None at its end."""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage):
                return None
            if isinstance(event, h11.ConnectionClosed):
                raise TransportError(f"{self.endpoint.url} closed the connection mid-body")

    async def body(self, limit: int) -> bytes:
        """The whole body; a body longer than `limit` bytes is refused."""
        parts: list[bytes] = []
        size = 0
        while (part := await self.chunk()) is not None:
            size += len(part)
            if size > limit:
                raise StoreError(f"response from {self.endpoint.url} exceeds {limit} bytes")
            parts.append(part)
        return b"".join(parts)

    def close(self) -> None:
        """Idempotent; the transport closes in the background (never blocks on a dead peer)."""
        self._writer.close()
