"""Fuzzing the SPDY framer: whatever bytes arrive, in whatever chunks, the only exception is
SpdyProtocolError, and every call returns promptly. Seeded, so a failure reproduces."""

from __future__ import annotations

import contextlib
import random
import time

import pytest

from shim.streaming.spdy import (
    DataReceived,
    GoAwayStatus,
    SpdyConnection,
    SpdyLimits,
    SpdyProtocolError,
    StreamClosedError,
    StreamEnded,
    StreamOpened,
)
from shim.streaming.spdy.frames import FrameDecoder
from tests import spdy_wire as wire

ITERATIONS = 3000
# Small limits so that mutated length fields hit them often instead of just waiting for bytes.
LIMITS = SpdyLimits(
    max_data_frame_length=4096,
    max_control_frame_length=4096,
    max_header_block_size=8192,
    max_concurrent_streams=8,
)


def valid_session() -> bytes:
    """A plausible client session: exec streams, port-forward headers, data, pings, settings."""
    peer = wire.PeerEncoder()
    out = wire.settings([(0, 4, 100), (1, 7, 65536)])
    for i, streamtype in enumerate(["error", "stdin", "stdout", "stderr", "resize"]):
        out += peer.syn_stream(2 * i + 1, {"streamtype": [streamtype]})
    out += peer.syn_stream(11, {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]})
    out += wire.data(3, b"echo hello\n") + wire.ping(1) + wire.window_update(0, 4096)
    out += wire.data(9, b'{"Width":80,"Height":24}\n') + wire.data(3, b"", fin=True)
    out += peer.headers(11, {"x": ["a", "b"]}) + wire.rst(11, 5) + wire.ping(3)
    out += wire.control(10, 0, b"credential") + wire.goaway(0)
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a byte
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:  # insert random bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 2:  # delete a run
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 3:  # duplicate a slice elsewhere (repeated frames, replayed ids)
            start = rng.randrange(len(buf) + 1)
            buf[pos:pos] = buf[start : start + rng.randint(1, 64)]
        elif op == 4:  # truncate
            del buf[pos:]
        elif buf:  # set a 32-bit word to an edge value (lengths, ids, counts)
            word = rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x00FFFFFF, 8])
            buf[pos : pos + 4] = word.to_bytes(4, "big")
    return bytes(buf)


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        size = rng.choice([1, 2, 7, 8, 64, 1000, len(data)])
        out.append(data[pos : pos + size])
        pos += size
    return out


def serve(conn: SpdyConnection, data: bytes, rng: random.Random) -> None:
    """Feed `data` as a server would: reply to streams, echo data, finish ended streams."""
    for chunk in [*chunks(rng, data), b""]:
        for event in conn.receive_data(chunk):
            try:
                if isinstance(event, StreamOpened):
                    conn.syn_reply(event.stream_id)
                elif isinstance(event, DataReceived) and not conn.is_local_closed(event.stream_id):
                    conn.send_data(event.stream_id, event.data[:100])
                elif isinstance(event, StreamEnded) and not conn.is_local_closed(event.stream_id):
                    conn.send_data(event.stream_id, b"", fin=True)
            except StreamClosedError:
                pass  # unidirectional streams: the caller's normal race
        conn.data_to_send()


@pytest.mark.timeout(120)
def test_mutated_sessions() -> None:
    rng = random.Random(20261201)
    base = valid_session()
    serve(SpdyConnection(LIMITS), base, random.Random(0))  # the unmutated session is fine
    errors = 0
    slowest = 0.0
    for _ in range(ITERATIONS):
        data = mutate(rng, base)
        conn = SpdyConnection(LIMITS)
        started = time.monotonic()
        try:
            serve(conn, data, rng)
        except SpdyProtocolError:
            errors += 1
            conn.go_away(GoAwayStatus.PROTOCOL_ERROR)
            assert conn.data_to_send()
        slowest = max(slowest, time.monotonic() - started)
    # Most mutations must be caught (the rest are still valid SPDY), and none may stall.
    assert errors > ITERATIONS // 4
    assert slowest < 2.0


@pytest.mark.timeout(120)
def test_random_bytes() -> None:
    rng = random.Random(9)
    for _ in range(ITERATIONS):
        data = rng.randbytes(rng.randint(0, 200))
        if rng.random() < 0.5:  # make it look like a control frame of version 3
            data = b"\x80\x03" + data
        decoder = FrameDecoder(LIMITS)
        decoder.feed(data)
        try:
            while decoder.next_frame() is not None:
                pass
        except SpdyProtocolError:
            pass
        conn = SpdyConnection(LIMITS)
        with contextlib.suppress(SpdyProtocolError):
            serve(conn, data, rng)


@pytest.mark.timeout(120)
def test_random_header_blocks_in_valid_frames() -> None:
    # Valid framing and a valid zlib stream around random header block contents.
    rng = random.Random(77)
    for _ in range(ITERATIONS // 3):
        peer = wire.PeerEncoder()
        raw = rng.randbytes(rng.randint(0, 40))
        if rng.random() < 0.5:
            raw = wire.raw_block([(rng.randbytes(rng.randint(0, 4)), rng.randbytes(3))]) + raw[:2]
        data = peer.syn_stream(1, raw=raw) + peer.syn_stream(3, {"a": ["b"]})
        with contextlib.suppress(SpdyProtocolError):
            serve(SpdyConnection(LIMITS), data, rng)
