"""Docker's log journal on the wire: chunked framing, multiplexed and TTY entries, any split."""

from __future__ import annotations

import random

import pytest

from shim.engine.docker_logs import (
    DOCKER_PIECE,
    ChunkedDecoder,
    Entry,
    JournalDecoder,
    JournalError,
)
from shim.engine.stdcopy import Stream, frame
from shim.timestamps import TimestampFormatter

T0 = 1_796_119_200_000_000_000
FMT = TimestampFormatter()


def chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def feed_split(decoder: ChunkedDecoder, data: bytes, rng: random.Random) -> bytes:
    out = b""
    pos = 0
    while pos < len(data):
        step = rng.randrange(1, 12)
        out += decoder.feed(data[pos : pos + step])
        pos += step
    return out


@pytest.mark.parametrize("seed", range(10))
def test_chunked_any_split(seed: int) -> None:
    rng = random.Random(seed)
    pieces = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(20)]
    decoder = ChunkedDecoder()
    assert feed_split(decoder, chunked(pieces), rng) == b"".join(pieces)
    assert decoder.done


def test_chunked_extension_trailer_and_garbage() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"3;name=x\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\nleftover") == b"abc"
    assert decoder.done
    with pytest.raises(JournalError, match="bad size"):
        ChunkedDecoder().feed(b"zz\r\n")
    with pytest.raises(JournalError, match="CRLF"):
        ChunkedDecoder().feed(b"1\r\naXY\r\n")


def entry(ts: int, content: bytes) -> bytes:
    return FMT(ts) + b" " + content


def decode(tty: bool, data: bytes, step: int) -> list[Entry]:
    decoder = JournalDecoder(tty)
    out: list[Entry] = []
    for pos in range(0, len(data), step):
        decoder.feed(data[pos : pos + step], out)
    decoder.finish(out)
    return out


EXPECTED = [
    ("stdout", T0, b"x" * DOCKER_PIECE),
    ("stdout", T0, b"x" * DOCKER_PIECE),
    ("stderr", T0 + 5, b"err\n"),
    ("stdout", T0, b"x" * 100 + b"\n"),
    ("stdout", T0 + 9, b"\n"),
    ("stdout", T0 + 10, b"no newline"),
]


@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 20])
def test_multiplexed_entries(step: int) -> None:
    names = {"stdout": Stream.STDOUT, "stderr": Stream.STDERR}
    data = b"".join(frame(names[s], entry(ts, c)) for s, ts, c in EXPECTED)
    assert decode(False, data, step) == EXPECTED


@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 20])
def test_tty_entries_split_at_newlines_and_16k_pieces(step: int) -> None:
    tty = [(s if s == "stdout" else "stdout", ts, c) for s, ts, c in EXPECTED]
    data = b"".join(entry(ts, c) for _, ts, c in tty)
    assert decode(True, data, step) == tty


def test_docker_error_frame_and_cut_frame() -> None:
    with pytest.raises(JournalError, match="docker reported: boom"):
        decode(False, frame(Stream.SYSTEMERR, b"boom"), 100)
    with pytest.raises(JournalError, match="inside a frame"):
        decode(False, frame(Stream.STDOUT, entry(T0, b"abc\n"))[:-1], 100)
    with pytest.raises(JournalError, match="without a timestamp"):
        decode(True, b"x" * 40, 100)
