"""SPDY/3.1 frames: round trips, bytes from an independent encoder, limits and garbage."""

from __future__ import annotations

import struct

import pytest

from shim.streaming.spdy.constants import FrameType, GoAwayStatus, RstStatus
from shim.streaming.spdy.errors import SpdyProtocolError
from shim.streaming.spdy.frames import (
    Data,
    Frame,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    Headers,
    Ping,
    RstStream,
    Setting,
    Settings,
    SynReply,
    SynStream,
    WindowUpdate,
    encode_control_header,
    encode_data_header,
)
from shim.streaming.spdy.limits import SpdyLimits
from tests import spdy_wire as wire

EVERY_FRAME: list[Frame] = [
    SynStream(1, {"streamtype": ["error"]}),
    SynStream(3, {"streamtype": ["stdin"]}, associated_to_stream_id=1, priority=7, slot=2),
    SynStream(5, {}, fin=True, unidirectional=True),
    SynReply(1, {}),
    SynReply(3, {"x": ["a", "b"]}, fin=True),
    RstStream(3, RstStatus.CANCEL),
    RstStream(5, 42),
    Settings(),
    Settings((Setting(4, 100), Setting(7, 65536, flags=1)), clear_settings=True),
    Ping(1),
    Ping(0xFFFF_FFFF),
    GoAway(0),
    GoAway(0x7FFF_FFFF, GoAwayStatus.INTERNAL_ERROR),
    Headers(1, {"a": ["b"]}),
    Headers(1, {}, fin=True),
    WindowUpdate(0, 1 << 16),
    WindowUpdate(3, 0x7FFF_FFFF),
    Data(1, b""),
    Data(1, b"hello", fin=True),
    Data(0x7FFF_FFFF, bytes(range(256)) * 64),
]


def decode_all(decoder: FrameDecoder, data: bytes) -> list[Frame]:
    decoder.feed(data)
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


def test_every_frame_round_trips_in_one_stream() -> None:
    encoder = FrameEncoder()  # one zlib stream for all the header blocks, as on a connection
    wire_bytes = b"".join(encoder.encode(f) for f in [*EVERY_FRAME, *EVERY_FRAME])
    decoder = FrameDecoder()
    assert decode_all(decoder, wire_bytes) == [*EVERY_FRAME, *EVERY_FRAME]
    assert decoder.buffered == 0


def test_every_frame_round_trips_byte_by_byte() -> None:
    encoder = FrameEncoder()
    wire_bytes = b"".join(encoder.encode(f) for f in EVERY_FRAME)
    decoder = FrameDecoder()
    got = [f for i in range(len(wire_bytes)) for f in decode_all(decoder, wire_bytes[i : i + 1])]
    assert got == EVERY_FRAME


# ---- interop: bytes built by hand (tests/spdy_wire.py), the way spdystream lays them out ------


def test_control_header_layout() -> None:
    assert encode_control_header(FrameType.PING, 0, 4) == b"\x80\x03\x00\x06\x00\x00\x00\x04"
    assert encode_data_header(5, True, 3) == b"\x00\x00\x00\x05\x01\x00\x00\x03"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (RstStream(3, 5), wire.rst(3, 5)),
        (Ping(7), wire.ping(7)),
        (GoAway(9, 1), wire.goaway(9, 1)),
        (WindowUpdate(0, 100), wire.window_update(0, 100)),
        (Settings((Setting(4, 100, 1),)), wire.settings([(1, 4, 100)])),
        (Data(3, b"abc", fin=True), wire.data(3, b"abc", fin=True)),
    ],
)
def test_fixed_frames_match_hand_built_bytes(frame: Frame, expected: bytes) -> None:
    assert FrameEncoder().encode(frame) == expected
    assert decode_all(FrameDecoder(), expected) == [frame]


def test_decodes_hand_built_client_session() -> None:
    # What client-go's exec sends: error, stdin, stdout, resize streams, stdin data, a ping.
    peer = wire.PeerEncoder()
    types = ["error", "stdin", "stdout", "resize"]
    session = b"".join(peer.syn_stream(1 + 2 * i, {"streamtype": [t]}) for i, t in enumerate(types))
    session += wire.data(3, b"ls\n") + wire.data(3, b"", fin=True) + wire.ping(1)
    session += peer.headers(1, {"k": ["v"]}, flags=1) + peer.syn_reply(7, {"a": ["1", "2"]})
    frames = decode_all(FrameDecoder(), session)
    assert frames == [
        SynStream(1, {"streamtype": ["error"]}),
        SynStream(3, {"streamtype": ["stdin"]}),
        SynStream(5, {"streamtype": ["stdout"]}),
        SynStream(7, {"streamtype": ["resize"]}),
        Data(3, b"ls\n"),
        Data(3, b"", fin=True),
        Ping(1),
        Headers(1, {"k": ["v"]}, fin=True),
        SynReply(7, {"a": ["1", "2"]}),
    ]


def test_hand_built_syn_stream_fields() -> None:
    frame = wire.PeerEncoder().syn_stream(
        0x8000_0009, {}, flags=3, associated=0x8000_0001, priority=5
    )
    # Reserved top bits are ignored, priority is the top 3 bits of its byte.
    assert decode_all(FrameDecoder(), frame) == [
        SynStream(9, {}, associated_to_stream_id=1, priority=5, fin=True, unidirectional=True)
    ]


def test_our_header_frames_decode_with_the_independent_peer() -> None:
    encoder = FrameEncoder()
    peer = wire.PeerDecoder()
    out = encoder.encode(SynReply(1, {})) + encoder.encode(SynReply(3, {"Port": ["80"]}, fin=True))
    out += encoder.encode(Headers(3, {"x": ["a", "b"]})) + encoder.encode(
        SynStream(2, {"s": ["t"]})
    )
    frames = peer.feed(out)
    assert [(f.kind, f.stream_id, f.flags, f.headers) for f in frames] == [
        ("SYN_REPLY", 1, 0, {}),
        ("SYN_REPLY", 3, 1, {"port": ["80"]}),
        ("HEADERS", 3, 0, {"x": ["a", "b"]}),
        ("SYN_STREAM", 2, 0, {"s": ["t"]}),
    ]


# ---- what the decoder refuses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (wire.control(wire.PING, 0, struct.pack(">I", 1), version=2), "SPDY version 2"),
        (wire.control(wire.PING, 0, struct.pack(">I", 1), version=4), "SPDY version 4"),
        (wire.data(0, b"x"), "DATA: stream id 0"),
        (wire.rst(0, 1), "RST_STREAM: stream id 0"),
        (wire.rst(1, 0), "status 0"),
        (wire.control(wire.RST_STREAM, 0, b"\0\0\0\1"), "RST_STREAM: 4 bytes, not 8"),
        (wire.control(wire.PING, 0, b"\0\0\0\1\0"), "PING: 5 bytes"),
        (wire.control(wire.GOAWAY, 0, b"\0\0\0\1"), "GOAWAY: 4 bytes"),
        (wire.control(wire.WINDOW_UPDATE, 0, b"\0" * 12), "WINDOW_UPDATE: 12 bytes"),
        (wire.control(wire.SETTINGS, 0, b"\0\0"), "SETTINGS: 2 bytes"),
        (wire.control(wire.SETTINGS, 0, b"\0\0\0\2" + b"\0" * 8), "2 entries in 12"),
        (wire.control(wire.SYN_STREAM, 0, b"\0" * 9), "SYN_STREAM: 9 bytes, need 10"),
        (wire.control(wire.SYN_REPLY, 0, b"\0\0\0"), "SYN_REPLY: 3 bytes, need 4"),
        (wire.control(wire.HEADERS, 0, b"\0\0\0"), "HEADERS: 3 bytes, need 4"),
        (wire.PeerEncoder().syn_stream(0, {}), "SYN_STREAM: stream id 0"),
        (wire.control(wire.SYN_REPLY, 0, b"\0\0\0\1"), "no count"),
        (wire.control(wire.SYN_REPLY, 0, b"\0\0\0\1garbage"), "failed to inflate"),
    ],
)
def test_malformed_frames_are_protocol_errors(data: bytes, message: str) -> None:
    decoder = FrameDecoder()
    decoder.feed(data)
    with pytest.raises(SpdyProtocolError, match=message):
        decoder.next_frame()
    # The decoder stays failed: a broken zlib context cannot be trusted again.
    with pytest.raises(SpdyProtocolError, match="already failed"):
        decoder.next_frame()


def test_data_frame_limit_is_checked_before_the_payload_arrives() -> None:
    decoder = FrameDecoder(SpdyLimits(max_data_frame_length=1000))
    decoder.feed(struct.pack(">II", 1, 1001))  # the header only
    with pytest.raises(SpdyProtocolError, match="1001 bytes, limit 1000"):
        decoder.next_frame()
    ok = FrameDecoder(SpdyLimits(max_data_frame_length=1000))
    assert decode_all(ok, wire.data(1, b"x" * 1000)) == [Data(1, b"x" * 1000)]


def test_control_frame_limit_is_checked_before_the_payload_arrives() -> None:
    decoder = FrameDecoder(SpdyLimits(max_control_frame_length=100))
    decoder.feed(encode_control_header(FrameType.SYN_STREAM, 0, 0xFF_FFFF))
    with pytest.raises(SpdyProtocolError, match="16777215 bytes, limit 100"):
        decoder.next_frame()


def test_default_limits_refuse_a_huge_header_block() -> None:
    frame = wire.PeerEncoder().syn_stream(1, raw=b"\0" * (70 << 10) + b"\1" * 100_000)
    decoder = FrameDecoder()
    decoder.feed(frame)
    with pytest.raises(SpdyProtocolError):
        decoder.next_frame()


def test_header_bomb_in_a_syn_stream() -> None:
    bomb = wire.raw_block([(b"x", b"a" * (32 << 20))])
    frame = wire.PeerEncoder().syn_stream(1, raw=bomb)
    assert len(frame) < 64 << 10, "fits under the compressed limit"
    decoder = FrameDecoder()
    decoder.feed(frame)
    with pytest.raises(SpdyProtocolError, match="larger than 262144"):
        decoder.next_frame()


@pytest.mark.parametrize("frame_type", [0, 5, 10, 11, 0xFFFF])
def test_unknown_control_types_are_skipped(frame_type: int) -> None:
    data = wire.control(frame_type, 0xFF, b"whatever" * 10) + wire.ping(3)
    assert decode_all(FrameDecoder(), data) == [Ping(3)]


def test_partial_frame_waits_for_more() -> None:
    decoder = FrameDecoder()
    frame = wire.data(1, b"abcdef")
    decoder.feed(frame[:10])
    assert decoder.next_frame() is None
    assert decoder.buffered == 10
    assert decode_all(decoder, frame[10:]) == [Data(1, b"abcdef")]


@pytest.mark.parametrize(
    "frame",
    [
        SynStream(0, {}),
        SynStream(1, {}, priority=8),
        SynReply(0x8000_0000, {}),
        RstStream(0, 1),
        GoAway(-1),
        Data(0, b""),
    ],
)
def test_encoder_refuses_bad_fields(frame: Frame) -> None:
    with pytest.raises(ValueError, match="failed to encode"):
        FrameEncoder().encode(frame)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        SpdyLimits(max_concurrent_streams=0)
    with pytest.raises(ValueError, match="24-bit"):
        SpdyLimits(max_data_frame_length=1 << 24)
