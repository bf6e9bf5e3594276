"""A WebSocket connection (wsproto, sans I/O) over a `SocketLink`, after the handshake.

The reader thread gets data fragments as they arrive (`fragments`); pings are answered and a
close is echoed on the way. wsproto is not thread-safe, so every `send` holds one lock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from shim.streaming.link import SocketLink

log = logging.getLogger(__name__)

NORMAL_CLOSURE = 1000
PROTOCOL_ERROR = 1002
INTERNAL_ERROR = 1011


class WebSocketLink:
    def __init__(self, link: SocketLink, ws: WSConnection) -> None:
        self.link = link
        self._ws = ws
        self._lock = threading.Lock()

    def send_message(self, payload: bytes | str) -> None:
        """One whole message: bytes as binary, str as text. Raises OSError if gone."""
        event: Event = (
            TextMessage(data=payload) if isinstance(payload, str) else BytesMessage(data=payload)
        )
        self._send(event)

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (once), then let the peer hang up."""
        with contextlib.suppress(OSError, LocalProtocolError):
            if self._ws.state is ConnectionState.OPEN:
                self._send(CloseConnection(code=code, reason=reason or None))
        self.link.finish_soon()

    def fragments(self) -> Iterator[tuple[bytes | str, bool]]:
        """(data, message_finished) of every data message as it arrives, until the peer
        closes, breaks the protocol or hangs up."""
        while True:
            data = self.link.recv()
            try:
                self._ws.receive_data(data or None)
                events = list(self._ws.events())
            except RemoteProtocolError as err:
                log.info("websocket stream: closed on a protocol error: %s", err)
                with contextlib.suppress(OSError, LocalProtocolError):
                    self._send(CloseConnection(code=PROTOCOL_ERROR, reason=str(err)[:100]))
                return
            for event in events:
                if isinstance(event, Message):
                    yield event.data, event.message_finished
                elif isinstance(event, Ping):
                    with contextlib.suppress(OSError, LocalProtocolError):
                        self._send(event.response())
                elif isinstance(event, CloseConnection):
                    with contextlib.suppress(OSError, LocalProtocolError):
                        if self._ws.state is not ConnectionState.CLOSED:
                            self._send(event.response())
                    return
            if not data:
                return

    def _send(self, event: Event) -> None:
        with self._lock:
            out = self._ws.send(event)
            self.link.sendall(out)
