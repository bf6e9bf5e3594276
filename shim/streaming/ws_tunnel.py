"""client-go's port-forward over WebSocket (`SPDY/3.1+portforward.k8s.io`): the SPDY session,
unchanged, with its bytes carried in binary WebSocket messages instead of on the bare
connection (client-go `portforward/tunneling_dialer.go`; CRI-CONTAINERS.md §4.2). Message
boundaries mean nothing: the bytes are one stream, as on a socket."""

from __future__ import annotations

from collections.abc import Iterator

from shim.streaming.ws_link import WebSocketLink


class TunnelLink:
    """A `spdy_session.ByteLink` over a WebSocket."""

    def __init__(self, ws: WebSocketLink) -> None:
        self._ws = ws
        self._fragments: Iterator[tuple[bytes | str, bool]] = ws.fragments()

    def recv(self) -> bytes:
        for data, _finished in self._fragments:
            if isinstance(data, str):
                return b""  # text has no place in the tunnel: treat as a hang-up
            if data:
                return data
        return b""

    def sendall(self, data: bytes) -> None:
        self._ws.send_message(data)

    def finish_soon(self) -> None:
        self._ws.close()

    def expire_at(self, deadline: float | None) -> None:
        self._ws.link.expire_at(deadline)

    def close(self) -> None:
        self._ws.link.close()
