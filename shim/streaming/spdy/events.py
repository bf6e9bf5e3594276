"""What `SpdyConnection.receive_data` reports, one event per thing the peer did."""

from __future__ import annotations

import dataclasses
from typing import TypeAlias

from shim.streaming.spdy.headers import HeaderBlock


@dataclasses.dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream (SYN_STREAM). Answer with `syn_reply` (or `rst_stream`) before
    sending on it."""

    stream_id: int
    headers: HeaderBlock
    associated_to_stream_id: int = 0
    priority: int = 0
    unidirectional: bool = False
    """The peer will not read: we may not send on this stream, not even a SYN_REPLY FIN."""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (matched lower-case), or None when absent."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


@dataclasses.dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes
    """Never empty: an empty DATA frame only ever carries a FIN, reported as `StreamEnded`."""


@dataclasses.dataclass(frozen=True, slots=True)
class HeadersReceived:
    """Extra headers on an open stream (a HEADERS frame)."""

    stream_id: int
    headers: HeaderBlock


@dataclasses.dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed the stream (FIN): it sends no more, we may still send until we FIN.
    Follows the StreamOpened/DataReceived/HeadersReceived of the frame that carried the FIN."""

    stream_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream is gone in both directions: the peer sent RST_STREAM (`by_peer`), or we sent
    one because the peer broke the stream's rules (DATA after its FIN, a SYN_REPLY to us)."""

    stream_id: int
    status: int
    """An `RstStatus` value."""
    by_peer: bool


@dataclasses.dataclass(frozen=True, slots=True)
class PingReceived:
    """A peer-initiated (odd) PING; it has already been echoed into `data_to_send()`."""

    ping_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer opens no more streams (spdystream also stops reading once it sends this)."""

    last_good_stream_id: int
    status: int
    """A `GoAwayStatus` value."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its end of the transport (`receive_data(b"")`) on a frame boundary."""


Event: TypeAlias = (
    StreamOpened
    | DataReceived
    | HeadersReceived
    | StreamEnded
    | StreamReset
    | PingReceived
    | GoAwayReceived
    | ConnectionClosed
)
