"""The server-side SPDY/3.1 state machine, driven by an independent hand-built client."""

from __future__ import annotations

import pytest

from shim.streaming.spdy import (
    ConnectionClosed,
    DataReceived,
    GoAwayReceived,
    GoAwayStatus,
    HeadersReceived,
    PingReceived,
    RstStatus,
    SpdyConnection,
    SpdyLimits,
    SpdyProtocolError,
    SpdyUsageError,
    StreamClosedError,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from tests import spdy_wire as wire


class Client:
    """A client end: encodes with its own zlib stream, decodes the server's output."""

    def __init__(self, conn: SpdyConnection) -> None:
        self.conn = conn
        self.encoder = wire.PeerEncoder()
        self.decoder = wire.PeerDecoder()

    def open(self, stream_id: int, streamtype: str, flags: int = 0) -> bytes:
        return self.encoder.syn_stream(stream_id, {"streamtype": [streamtype]}, flags=flags)

    def received(self) -> list[wire.PeerFrame]:
        return self.decoder.feed(self.conn.data_to_send())


@pytest.fixture
def conn() -> SpdyConnection:
    return SpdyConnection()


@pytest.fixture
def client(conn: SpdyConnection) -> Client:
    return Client(conn)


def test_exec_session(conn: SpdyConnection, client: Client) -> None:
    # client-go's v4 exec with stdin and a tty: error, stdin, stdout, resize.
    opened = conn.receive_data(
        client.open(1, "error") + client.open(3, "stdin") + client.open(5, "stdout")
    )
    assert [
        (e.stream_id, e.header("StreamType")) for e in opened if isinstance(e, StreamOpened)
    ] == [
        (1, "error"),
        (3, "stdin"),
        (5, "stdout"),
    ]
    opened = conn.receive_data(client.open(7, "resize"))
    assert opened == [StreamOpened(7, {"streamtype": ["resize"]})]
    for sid in (1, 3, 5, 7):
        conn.syn_reply(sid)
    assert [(f.kind, f.stream_id, f.headers) for f in client.received()] == [
        ("SYN_REPLY", sid, {}) for sid in (1, 3, 5, 7)
    ]
    events = conn.receive_data(
        wire.data(7, b'{"Width":80,"Height":24}\n')
        + wire.data(3, b"echo hi\n")
        + wire.data(3, b"", fin=True)
    )
    assert events == [
        DataReceived(7, b'{"Width":80,"Height":24}\n'),
        DataReceived(3, b"echo hi\n"),
        StreamEnded(3),
    ]
    assert conn.is_peer_closed(3) and not conn.is_local_closed(3) and conn.is_open(3)
    conn.send_data(5, b"hi\r\n")
    conn.send_data(1, b'{"status":"Success"}', fin=True)
    for sid in (3, 5, 7):
        conn.send_data(sid, b"", fin=True)
    conn.go_away()
    frames = client.received()
    assert [(f.kind, f.stream_id, f.flags, f.payload) for f in frames[:-1]] == [
        ("DATA", 5, 0, b"hi\r\n"),
        ("DATA", 1, 1, b'{"status":"Success"}'),
        ("DATA", 3, 1, b""),
        ("DATA", 5, 1, b""),
        ("DATA", 7, 1, b""),
    ]
    assert (frames[-1].kind, frames[-1].values) == ("GOAWAY", (7, 0))
    assert not conn.is_open(3), "FIN both ways closes the stream"
    assert conn.open_stream_ids == [1, 5, 7]  # the client has not finished those
    assert conn.receive_data(wire.goaway(0)) == [GoAwayReceived(0, 0)]
    assert conn.receive_data(b"") == [ConnectionClosed()]


def test_port_forward_headers(conn: SpdyConnection, client: Client) -> None:
    headers = {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]}
    [opened] = conn.receive_data(client.encoder.syn_stream(1, headers))
    assert isinstance(opened, StreamOpened)
    assert (opened.header("port"), opened.header("requestid"), opened.header("nope")) == (
        "80",
        "0",
        None,
    )


def test_client_pings_are_echoed_and_even_ones_ignored(
    conn: SpdyConnection, client: Client
) -> None:
    assert conn.receive_data(wire.ping(1) + wire.ping(2) + wire.ping(3)) == [
        PingReceived(1),
        PingReceived(3),
    ]
    assert [(f.kind, f.values) for f in client.received()] == [("PING", (1,)), ("PING", (3,))]


def test_settings_and_window_updates_are_ignored(conn: SpdyConnection, client: Client) -> None:
    data = (
        wire.settings([(0, 7, 1000), (0, 4, 1)])
        + wire.window_update(0, 1)
        + wire.window_update(1, 5)
    )
    assert conn.receive_data(data) == []
    assert conn.data_to_send() == b""


def test_sending_never_waits_for_window_credit(conn: SpdyConnection, client: Client) -> None:
    # spdystream never sends WINDOW_UPDATE: far more than the 64 KiB initial window must go out.
    conn.receive_data(client.open(1, "stdout"))
    conn.syn_reply(1)
    conn.send_data(1, b"x" * (1 << 20), fin=True)
    frames = client.received()[1:]
    assert sum(len(f.payload) for f in frames) == 1 << 20
    assert max(len(f.payload) for f in frames) == 64 << 10
    assert [f.flags for f in frames] == [0] * (len(frames) - 1) + [1]


def test_send_data_frame_size_is_configurable() -> None:
    conn = SpdyConnection(SpdyLimits(max_send_data_length=4))
    client = Client(conn)
    conn.receive_data(client.open(1, "stdout"))
    conn.syn_reply(1)
    conn.send_data(1, bytearray(b"abcdefghij"))
    assert [f.payload for f in client.received()[1:]] == [b"abcd", b"efgh", b"ij"]


def test_syn_stream_with_fin(conn: SpdyConnection, client: Client) -> None:
    events = conn.receive_data(client.open(1, "error", flags=1))
    assert events == [StreamOpened(1, {"streamtype": ["error"]}), StreamEnded(1)]
    conn.syn_reply(1, {"a": "b"}, fin=True)
    assert not conn.is_open(1)
    [reply] = client.received()
    assert (reply.kind, reply.flags, reply.headers) == ("SYN_REPLY", 1, {"a": ["b"]})


def test_headers_frame(conn: SpdyConnection, client: Client) -> None:
    conn.receive_data(client.open(1, "x"))
    assert conn.receive_data(client.encoder.headers(1, {"k": ["v"]}, flags=1)) == [
        HeadersReceived(1, {"k": ["v"]}),
        StreamEnded(1),
    ]


def test_unidirectional_stream_cannot_be_answered(conn: SpdyConnection, client: Client) -> None:
    [opened] = conn.receive_data(client.open(1, "x", flags=2))
    assert isinstance(opened, StreamOpened) and opened.unidirectional
    with pytest.raises(StreamClosedError, match="our side is finished"):
        conn.syn_reply(1)
    assert conn.receive_data(wire.data(1, b"a", fin=True)) == [
        DataReceived(1, b"a"),
        StreamEnded(1),
    ]
    assert not conn.is_open(1)


# ---- stream ids ----------------------------------------------------------------------------


def test_even_stream_id_from_client_is_a_protocol_error(
    conn: SpdyConnection, client: Client
) -> None:
    with pytest.raises(SpdyProtocolError, match="even ids"):
        conn.receive_data(client.open(2, "x"))


@pytest.mark.parametrize("second", [1, 3])
def test_stream_id_reuse_or_decrease_is_a_protocol_error(
    conn: SpdyConnection, client: Client, second: int
) -> None:
    conn.receive_data(client.open(3, "x"))
    with pytest.raises(SpdyProtocolError, match="not above the last one, 3"):
        conn.receive_data(client.open(second, "y"))


def test_stream_ids_may_skip(conn: SpdyConnection, client: Client) -> None:
    assert len(conn.receive_data(client.open(1, "a") + client.open(99, "b"))) == 2


# ---- frames on streams that are not open ---------------------------------------------------


def test_data_on_unknown_stream_draws_one_rst(conn: SpdyConnection, client: Client) -> None:
    assert conn.receive_data(wire.data(5, b"x") + wire.data(5, b"y")) == []
    [rst] = client.received()
    assert (rst.kind, rst.values) == ("RST_STREAM", (5, RstStatus.INVALID_STREAM))


def test_data_after_peer_fin_resets_the_stream(conn: SpdyConnection, client: Client) -> None:
    conn.receive_data(client.open(1, "stdin"))
    conn.syn_reply(1)
    conn.receive_data(wire.data(1, b"", fin=True))
    events = conn.receive_data(wire.data(1, b"late") + wire.data(1, b"later"))
    assert events == [StreamReset(1, RstStatus.STREAM_ALREADY_CLOSED, by_peer=False)]
    frames = client.received()
    assert [(f.kind, f.values) for f in frames[1:]] == [
        ("RST_STREAM", (1, RstStatus.STREAM_ALREADY_CLOSED))
    ]
    with pytest.raises(StreamClosedError, match="closed"):
        conn.send_data(1, b"x")


def test_headers_on_closed_stream_resets(conn: SpdyConnection, client: Client) -> None:
    conn.receive_data(client.open(1, "x", flags=1))
    events = conn.receive_data(client.encoder.headers(1, {"a": ["b"]}))
    assert events == [StreamReset(1, RstStatus.STREAM_ALREADY_CLOSED, by_peer=False)]


def test_syn_reply_from_client_is_refused(conn: SpdyConnection, client: Client) -> None:
    conn.receive_data(client.open(1, "x"))
    events = conn.receive_data(client.encoder.syn_reply(1, {}) + client.encoder.syn_reply(4, {}))
    assert events == [StreamReset(1, RstStatus.PROTOCOL_ERROR, by_peer=False)]
    assert [(f.kind, f.values) for f in client.received()] == [
        ("RST_STREAM", (1, RstStatus.PROTOCOL_ERROR)),
        ("RST_STREAM", (4, RstStatus.PROTOCOL_ERROR)),
    ]


def test_rst_from_peer(conn: SpdyConnection, client: Client) -> None:
    conn.receive_data(client.open(1, "stdout"))
    conn.syn_reply(1)
    assert conn.receive_data(wire.rst(1, RstStatus.CANCEL)) == [
        StreamReset(1, RstStatus.CANCEL, by_peer=True)
    ]
    assert conn.receive_data(wire.rst(1, RstStatus.CANCEL) + wire.rst(9, 1)) == []
    assert not conn.is_open(1) and conn.is_peer_closed(1) and conn.is_local_closed(1)
    with pytest.raises(StreamClosedError) as caught:
        conn.send_data(1, b"x")
    assert caught.value.stream_id == 1
    conn.rst_stream(1)  # idempotent: nothing to reset, nothing sent
    assert [f.kind for f in client.received()] == ["SYN_REPLY"]


def test_our_rst(conn: SpdyConnection, client: Client) -> None:
    conn.receive_data(client.open(1, "data"))
    conn.rst_stream(1, RstStatus.REFUSED_STREAM)
    conn.rst_stream(1)
    assert [(f.kind, f.values) for f in client.received()] == [
        ("RST_STREAM", (1, RstStatus.REFUSED_STREAM))
    ]
    # Frames the client had in flight are dropped without another RST.
    assert conn.receive_data(wire.data(1, b"in flight")) == []
    assert conn.data_to_send() == b""


def test_reset_memory_is_bounded() -> None:
    conn = SpdyConnection(SpdyLimits(reset_memory=2))
    client = Client(conn)
    conn.receive_data(wire.data(1, b"") + wire.data(3, b"") + wire.data(5, b"") + wire.data(1, b""))
    # 1 was forgotten when 5 was remembered, so it draws a second RST.
    assert [f.values[0] for f in client.received()] == [1, 3, 5, 1]


# ---- caller mistakes -------------------------------------------------------------------------


def test_usage_errors(conn: SpdyConnection, client: Client) -> None:
    conn.receive_data(client.open(1, "stdout"))
    with pytest.raises(SpdyUsageError, match="no SYN_REPLY yet"):
        conn.send_data(1, b"x")
    conn.syn_reply(1)
    with pytest.raises(SpdyUsageError, match="already sent"):
        conn.syn_reply(1)
    with pytest.raises(SpdyUsageError, match="never opened"):
        conn.syn_reply(3)
    with pytest.raises(SpdyUsageError, match="out of range"):
        conn.send_data(0, b"")
    conn.send_data(1, b"", fin=True)
    with pytest.raises(StreamClosedError, match="our side is finished"):
        conn.send_data(1, b"more")
    conn.receive_data(client.open(3, "x"))
    with pytest.raises(ValueError, match="duplicate"):
        conn.syn_reply(3, {"a": "1", "A": "2"})


# ---- limits --------------------------------------------------------------------------------


def test_streams_beyond_the_limit_are_refused() -> None:
    conn = SpdyConnection(SpdyLimits(max_concurrent_streams=2))
    client = Client(conn)
    events = conn.receive_data(client.open(1, "a") + client.open(3, "b") + client.open(5, "c"))
    assert [e.stream_id for e in events if isinstance(e, StreamOpened)] == [1, 3]
    assert [(f.kind, f.values) for f in client.received()] == [
        ("RST_STREAM", (5, RstStatus.REFUSED_STREAM))
    ]
    assert conn.receive_data(wire.data(5, b"x")) == [], "the refused stream's data is dropped"
    conn.rst_stream(1)
    assert conn.receive_data(client.open(7, "d")) == [StreamOpened(7, {"streamtype": ["d"]})]
    conn.go_away()
    assert client.received()[-1].values == (7, 0), "the refused stream was never accepted"


def test_stream_flood_keeps_state_bounded(conn: SpdyConnection, client: Client) -> None:
    # Open, finish and reset 5000 streams: nothing grows but the reset memory's fixed cap.
    for n in range(5000):
        sid = 2 * n + 1
        conn.receive_data(client.open(sid, "data", flags=1) + wire.rst(sid, 5))
    assert conn.open_stream_ids == []
    assert len(conn.data_to_send()) == 0


def test_limit_errors_reach_the_connection() -> None:
    conn = SpdyConnection(SpdyLimits(max_data_frame_length=10))
    with pytest.raises(SpdyProtocolError, match="limit 10"):
        conn.receive_data(wire.data(1, b"x" * 11))


# ---- end of connection ---------------------------------------------------------------------


def test_go_away_reports_the_last_accepted_stream(conn: SpdyConnection, client: Client) -> None:
    conn.receive_data(client.open(1, "a") + client.open(3, "b"))
    conn.go_away(GoAwayStatus.INTERNAL_ERROR)
    conn.go_away()  # idempotent
    assert conn.go_away_sent
    # New streams after our GOAWAY are ignored, old ones go on.
    assert conn.receive_data(client.open(5, "c") + wire.data(5, b"x")) == []
    assert conn.receive_data(wire.data(3, b"y")) == [DataReceived(3, b"y")]
    assert [(f.kind, f.values) for f in client.received()] == [("GOAWAY", (3, 2))]


def test_go_away_without_streams(conn: SpdyConnection, client: Client) -> None:
    conn.go_away()
    assert [(f.kind, f.values) for f in client.received()] == [("GOAWAY", (0, 0))]


def test_eof_in_the_middle_of_a_frame(conn: SpdyConnection, client: Client) -> None:
    assert conn.receive_data(wire.data(1, b"abc")[:5]) == []
    with pytest.raises(SpdyProtocolError, match="5 bytes into a frame"):
        conn.receive_data(b"")


def test_data_after_eof_is_a_usage_error(conn: SpdyConnection) -> None:
    conn.receive_data(b"")
    with pytest.raises(SpdyUsageError, match="already closed"):
        conn.receive_data(wire.ping(1))


def test_after_a_protocol_error_only_goaway_remains(conn: SpdyConnection, client: Client) -> None:
    conn.receive_data(client.open(1, "a"))
    with pytest.raises(SpdyProtocolError) as caught:
        conn.receive_data(b"\x80\x02\x00\x01" + b"\0" * 20)
    assert caught.value.goaway_status == GoAwayStatus.PROTOCOL_ERROR
    with pytest.raises(SpdyProtocolError, match="already failed"):
        conn.receive_data(wire.ping(1))
    conn.go_away(caught.value.goaway_status)
    assert [(f.kind, f.values) for f in client.received()] == [("GOAWAY", (1, 1))]
