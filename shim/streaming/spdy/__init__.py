"""A sans-IO SPDY/3.1 framer for the streaming server (exec, attach, port-forward).

Kubernetes clients (kubectl, crictl, kubelet, all through apimachinery's httpstream/spdy over
moby/spdystream) speak SPDY/3.1 to a runtime's streaming server. Python has no maintained SPDY
implementation (PyPI holds `spdy-py` 0.2.0, last released 2021, and a 2012 C binding), so this is
our own, limited to what those clients use: no server push, no flow-control windows (spdystream
has none), no CREDENTIAL frames. Like h11 and wsproto it touches no socket and no thread.

Public API (everything the server needs; import it from here):

    conn = SpdyConnection(SpdyLimits())          # one per upgraded HTTP connection
    events = conn.receive_data(chunk)            # chunk = bytes read; b"" = peer closed
    sock.sendall(conn.data_to_send())            # after every receive_data and every call below

    conn.syn_reply(stream_id, headers=None, fin=False)   # accept a StreamOpened, before DATA
    conn.send_data(stream_id, data, fin=False)           # fin=True half-closes our side
    conn.rst_stream(stream_id, RstStatus.CANCEL)         # abort; no-op if already gone
    conn.go_away(GoAwayStatus.OK)                        # no more streams; idempotent
    conn.is_open(sid) / is_peer_closed(sid) / is_local_closed(sid) / open_stream_ids

Events (`events` module): StreamOpened(stream_id, headers, ...; .header(name) -> first value),
DataReceived(stream_id, data), HeadersReceived(stream_id, headers), StreamEnded(stream_id) (peer
FIN), StreamReset(stream_id, status, by_peer), PingReceived(ping_id) (already echoed),
GoAwayReceived(last_good_stream_id, status), ConnectionClosed(). Headers are
`dict[str, list[str]]` with lower-case names.

Errors: `SpdyProtocolError` from `receive_data` = hostile or broken peer or a limit exceeded; the
connection is dead: `conn.go_away(e.goaway_status)`, flush `data_to_send()`, close the socket.
`StreamClosedError` from `syn_reply`/`send_data` = the stream was reset or finished (a normal
race with the peer); drop the write. `SpdyUsageError` = a bug in the caller (DATA before
SYN_REPLY, a second SYN_REPLY, a stream id never opened).

Peer-initiated PINGs are echoed automatically, SETTINGS and WINDOW_UPDATE are ignored, streams
beyond `SpdyLimits.max_concurrent_streams` are refused with RST_STREAM REFUSED_STREAM, frames
on unknown or finished streams draw one RST_STREAM each (no event unless a stream we knew dies).
`frames` (FrameEncoder/FrameDecoder and the frame dataclasses) and `headers` are usable on their
own, e.g. to write a test client.

We only ever send SYN_REPLY, DATA, RST_STREAM, PING (echoes) and GOAWAY: spdystream v0.5.1 closes
the connection on a control frame type it does not know, and has no use for the others.
Interop is proven both ways against spdystream itself: `tests/unit/test_streaming_spdy_captures.py`
decodes bytes it wrote, `tests/integration/test_streaming_spdy_spdystream.py` runs its client
(`tests/spdystream_peer`, Go) against this framer.
"""

from shim.streaming.spdy.connection import SpdyConnection
from shim.streaming.spdy.constants import GoAwayStatus, RstStatus
from shim.streaming.spdy.errors import (
    SpdyError,
    SpdyProtocolError,
    SpdyUsageError,
    StreamClosedError,
)
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
from shim.streaming.spdy.headers import HeaderBlock, HeaderInput
from shim.streaming.spdy.limits import SpdyLimits

__all__ = [
    "ConnectionClosed",
    "DataReceived",
    "Event",
    "GoAwayReceived",
    "GoAwayStatus",
    "HeaderBlock",
    "HeaderInput",
    "HeadersReceived",
    "PingReceived",
    "RstStatus",
    "SpdyConnection",
    "SpdyError",
    "SpdyLimits",
    "SpdyProtocolError",
    "SpdyUsageError",
    "StreamClosedError",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
]
