"""The server side of a SPDY/3.1 session as a sans-IO state machine.

Streams are opened by the client only (odd ids, strictly increasing, draft 3 §2.3.2); the Kubernetes
streaming protocols never need a server-initiated stream. Per stream:

    SYN_STREAM --> open --(peer FIN)--> peer closed --(our FIN)--> closed
                    |  \\--(our FIN)--> local closed --(peer FIN)--/   ^
                    \\---------------(RST_STREAM either way)-----------/

Flow control: moby/spdystream (what kubectl, crictl and kubelet speak, through apimachinery's
httpstream/spdy) parses SETTINGS and WINDOW_UPDATE and then drops them, and never sends either
(`connection.go` frame handler, @f0be51f). So there are no windows to honour: we never send
WINDOW_UPDATE, we do not hold the peer to a window, and `send_data` never waits for credit —
back-pressure is the transport's (the caller stops reading from its source while the socket's
send buffer is full). SETTINGS and WINDOW_UPDATE from the peer are validated and ignored.
"""

from __future__ import annotations

import collections
import dataclasses

from shim.streaming.spdy.constants import MAX_STREAM_ID, GoAwayStatus, RstStatus
from shim.streaming.spdy.errors import SpdyProtocolError, SpdyUsageError, StreamClosedError
from shim.streaming.spdy.events import (
    ConnectionClosed,
    DataReceived,
    Event,
    GoAwayReceived,
    HeadersReceived,
    PingReceived,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from shim.streaming.spdy.frames import (
    Data,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    Headers,
    Ping,
    RstStream,
    Settings,
    SynReply,
    SynStream,
    WindowUpdate,
    encode_data_header,
)
from shim.streaming.spdy.headers import HeaderInput, header_block
from shim.streaming.spdy.limits import SpdyLimits


@dataclasses.dataclass(slots=True)
class _Stream:
    replied: bool = False
    local_closed: bool = False
    peer_closed: bool = False


class SpdyConnection:
    """One server-side SPDY/3.1 connection: feed it what the socket reads, write out what
    `data_to_send()` returns. Not thread-safe; one owner drives it."""

    def __init__(self, limits: SpdyLimits | None = None) -> None:
        self.limits = limits or SpdyLimits()
        self._decoder = FrameDecoder(self.limits)
        self._encoder = FrameEncoder()
        self._out: list[bytes] = []
        self._streams: dict[int, _Stream] = {}
        self._last_peer_stream_id = 0
        self._last_accepted_stream_id = 0
        # Ids we reset: the peer may have frames for them in flight, which we drop quietly.
        self._reset_sent: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._go_away_sent = False
        self._peer_eof = False

    # ---- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Process bytes read from the peer; `b""` means the peer closed its end. Raises
        `SpdyProtocolError` on a protocol violation or exceeded limit (then, and on every later
        call, the connection is dead: send `go_away(e.goaway_status)`, flush, close)."""
        if self._peer_eof and data:
            raise SpdyUsageError("failed to receive data: the peer already closed the connection")
        events: list[Event] = []
        if not data:
            if self._decoder.buffered:
                raise SpdyProtocolError(
                    f"failed to decode frame: connection closed {self._decoder.buffered} "
                    "bytes into a frame"
                )
            self._peer_eof = True
            return [ConnectionClosed()]
        self._decoder.feed(data)
        while (frame := self._decoder.next_frame()) is not None:
            match frame:
                case Data(stream_id, payload, fin):
                    self._on_data(stream_id, payload, fin, events)
                case SynStream():
                    self._on_syn_stream(frame, events)
                case Headers(stream_id, headers, fin):
                    if self._stream_for_peer_frame(stream_id, events) is not None:
                        events.append(HeadersReceived(stream_id, headers))
                        if fin:
                            self._peer_finished(stream_id, events)
                case RstStream(stream_id, status):
                    if self._streams.pop(stream_id, None) is not None:
                        events.append(StreamReset(stream_id, status, by_peer=True))
                case Ping(ping_id):
                    # Odd ids are the client's: echo them. Even ids would be answers to our own
                    # pings, and we send none, so they are ignored (draft 3 §2.6.5).
                    if ping_id & 1:
                        self._out.append(self._encoder.encode(frame))
                        events.append(PingReceived(ping_id))
                case GoAway(last_good_stream_id, status):
                    events.append(GoAwayReceived(last_good_stream_id, status))
                case SynReply(stream_id):
                    # We open no streams, so there is nothing the peer could be replying to.
                    self._stream_error(stream_id, RstStatus.PROTOCOL_ERROR, events)
                case Settings() | WindowUpdate():
                    pass  # no flow control to apply: see the module docstring
        return events

    def _on_syn_stream(self, frame: SynStream, events: list[Event]) -> None:
        stream_id = frame.stream_id
        if self._go_away_sent:
            return  # after our GOAWAY new streams are ignored (draft 3 §2.6.6)
        if stream_id % 2 == 0:
            raise SpdyProtocolError(f"failed to open stream {stream_id}: even ids are the server's")
        if stream_id <= self._last_peer_stream_id:
            raise SpdyProtocolError(
                f"failed to open stream {stream_id}: not above the last one, "
                f"{self._last_peer_stream_id}"
            )
        self._last_peer_stream_id = stream_id
        if len(self._streams) >= self.limits.max_concurrent_streams:
            self._send_rst(stream_id, RstStatus.REFUSED_STREAM)
            return
        self._last_accepted_stream_id = stream_id
        self._streams[stream_id] = _Stream(local_closed=frame.unidirectional)
        events.append(
            StreamOpened(
                stream_id,
                frame.headers,
                associated_to_stream_id=frame.associated_to_stream_id,
                priority=frame.priority,
                unidirectional=frame.unidirectional,
            )
        )
        if frame.fin:
            self._peer_finished(stream_id, events)

    def _on_data(self, stream_id: int, payload: bytes, fin: bool, events: list[Event]) -> None:
        if self._stream_for_peer_frame(stream_id, events) is None:
            return
        if payload:
            events.append(DataReceived(stream_id, payload))
        if fin:
            self._peer_finished(stream_id, events)

    def _stream_for_peer_frame(self, stream_id: int, events: list[Event]) -> _Stream | None:
        """The stream a DATA/HEADERS frame may go to, or None after answering the frame with the
        stream error the spec asks for (draft 3 §2.2.2)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            if not self._go_away_sent:
                self._stream_error(stream_id, RstStatus.INVALID_STREAM, events)
            return None
        if stream.peer_closed:
            self._stream_error(stream_id, RstStatus.STREAM_ALREADY_CLOSED, events)
            return None
        return stream

    def _peer_finished(self, stream_id: int, events: list[Event]) -> None:
        stream = self._streams[stream_id]
        stream.peer_closed = True
        events.append(StreamEnded(stream_id))
        if stream.local_closed:
            del self._streams[stream_id]

    def _stream_error(self, stream_id: int, status: RstStatus, events: list[Event]) -> None:
        if stream_id in self._reset_sent:
            return
        self._send_rst(stream_id, status)
        if self._streams.pop(stream_id, None) is not None:
            events.append(StreamReset(stream_id, status, by_peer=False))

    def _send_rst(self, stream_id: int, status: int) -> None:
        self._out.append(self._encoder.encode(RstStream(stream_id, status)))
        self._reset_sent[stream_id] = None
        if len(self._reset_sent) > self.limits.reset_memory:
            self._reset_sent.popitem(last=False)

    # ---- output ------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call (b"" when nothing is)."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def syn_reply(
        self, stream_id: int, headers: HeaderInput | None = None, fin: bool = False
    ) -> None:
        """Accept a stream the peer opened. Must come before any DATA on it: spdystream drops
        DATA that arrives on a stream it has had no reply for."""
        stream = self._sendable(stream_id, "SYN_REPLY")
        if stream.replied:
            raise SpdyUsageError(f"failed to send SYN_REPLY on stream {stream_id}: already sent")
        self._out.append(self._encoder.encode(SynReply(stream_id, header_block(headers), fin=fin)))
        stream.replied = True
        if fin:
            self._local_finished(stream_id, stream)

    def send_data(
        self, stream_id: int, data: bytes | bytearray | memoryview, fin: bool = False
    ) -> None:
        """Queue `data` (split into DATA frames of at most `limits.max_send_data_length`), and
        half-close our side when `fin`. Never blocks (see the module docstring)."""
        stream = self._sendable(stream_id, "DATA")
        if not stream.replied:
            raise SpdyUsageError(f"failed to send DATA on stream {stream_id}: no SYN_REPLY yet")
        size = self.limits.max_send_data_length
        if len(data) <= size:  # the common case: one frame, the payload not copied
            self._out += (encode_data_header(stream_id, fin, len(data)), bytes(data))
        else:
            view = memoryview(data)
            for start in range(0, len(view), size):
                chunk = bytes(view[start : start + size])
                last = start + size >= len(view)
                self._out += (encode_data_header(stream_id, fin and last, len(chunk)), chunk)
        if fin:
            self._local_finished(stream_id, stream)

    def rst_stream(self, stream_id: int, status: RstStatus = RstStatus.CANCEL) -> None:
        """Abort a stream in both directions; a no-op on one that is already gone (idempotent)."""
        if self._streams.pop(stream_id, None) is not None:
            self._send_rst(stream_id, status)

    def go_away(self, status: GoAwayStatus = GoAwayStatus.OK) -> None:
        """Tell the peer no more streams will be accepted (later SYN_STREAMs are ignored);
        streams already open go on. Idempotent: only the first call sends GOAWAY."""
        if self._go_away_sent:
            return
        self._go_away_sent = True
        self._out.append(self._encoder.encode(GoAway(self._last_accepted_stream_id, status)))

    def _sendable(self, stream_id: int, what: str) -> _Stream:
        if not 1 <= stream_id <= MAX_STREAM_ID:
            raise SpdyUsageError(f"failed to send {what}: stream id {stream_id} out of range")
        if stream_id > self._last_peer_stream_id:
            raise SpdyUsageError(f"failed to send {what} on stream {stream_id}: never opened")
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(
                f"failed to send {what} on stream {stream_id}: closed", stream_id
            )
        if stream.local_closed:
            raise StreamClosedError(
                f"failed to send {what} on stream {stream_id}: our side is finished", stream_id
            )
        return stream

    def _local_finished(self, stream_id: int, stream: _Stream) -> None:
        stream.local_closed = True
        if stream.peer_closed:
            del self._streams[stream_id]

    # ---- state -------------------------------------------------------------------------------

    def is_open(self, stream_id: int) -> bool:
        """The stream exists and is not closed both ways (nor reset)."""
        return stream_id in self._streams

    def is_peer_closed(self, stream_id: int) -> bool:
        """The peer sends nothing more on this stream (it sent FIN or RST, or the stream is
        gone or never existed)."""
        stream = self._streams.get(stream_id)
        return stream is None or stream.peer_closed

    def is_local_closed(self, stream_id: int) -> bool:
        """We may send nothing more on this stream."""
        stream = self._streams.get(stream_id)
        return stream is None or stream.local_closed

    @property
    def open_stream_ids(self) -> list[int]:
        return sorted(self._streams)

    @property
    def go_away_sent(self) -> bool:
        return self._go_away_sent
