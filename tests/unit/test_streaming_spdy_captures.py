"""Bytes written by moby/spdystream v0.5.1 itself (the library under kubectl, crictl and
kubelet), decoded by our framer. Captured by `tests/spdystream_peer` (`go run . capture
../unit/data/spdy`): a spdystream client doing an exec-like session against a spdystream
server over a pipe; client.bin is what the client sent, server.bin what the server sent."""

from __future__ import annotations

import pathlib

from shim.streaming.spdy import (
    DataReceived,
    GoAwayReceived,
    PingReceived,
    RstStatus,
    SpdyConnection,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from shim.streaming.spdy.frames import Data, Frame, FrameDecoder, Ping, SynReply

DATA = pathlib.Path(__file__).parent / "data" / "spdy"


def test_spdystream_client_bytes() -> None:
    conn = SpdyConnection()
    events = conn.receive_data((DATA / "client.bin").read_bytes())
    assert events == [
        StreamOpened(1, {"streamtype": ["error"]}),
        StreamOpened(3, {"streamtype": ["stdin"]}),
        StreamOpened(5, {"streamtype": ["stdout"]}),
        StreamOpened(7, {"streamtype": ["resize"]}),
        # Go's http.Header: canonical names on the Go side, lower-cased on the wire, two values
        # of one name joined by NUL.
        StreamOpened(
            9, {"streamtype": ["data"], "port": ["80"], "requestid": ["0"], "x-multi": ["a", "b"]}
        ),
        DataReceived(3, b"echo hello\n"),
        DataReceived(7, b'{"Width":80,"Height":24}\n'),
        PingReceived(1),
        StreamEnded(3),  # stdin's Close(): an empty DATA frame with FIN
        StreamReset(9, RstStatus.CANCEL, by_peer=True),  # Stream.Reset()
        GoAwayReceived(0, 0),  # Connection.Close()
    ]


def test_spdystream_server_bytes() -> None:
    decoder = FrameDecoder()
    decoder.feed((DATA / "server.bin").read_bytes())
    frames: list[Frame] = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    assert frames == [
        *(SynReply(sid, {}) for sid in (1, 3, 5, 7, 9)),
        Ping(1),
        Data(5, b"hello\r\n"),
        Data(5, b"", fin=True),
        Data(1, b'{"status":"Success"}'),
        Data(1, b"", fin=True),
    ]
    assert decoder.buffered == 0
