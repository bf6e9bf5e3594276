"""The CRI log writer: containerd's line rules (CRI-CONTAINERS.md §2.2) on byte strings."""

from __future__ import annotations

import random

import pytest

from shim.container.log_writer import MAX_LINE, STDERR, STDOUT, CriLogWriter
from shim.timestamps import TimestampFormatter, TimestampParser, parse_general, since_param

T0 = 1_795_000_000_123_456_789  # 2026-11-18T..., any fixed instant
STAMP = TimestampFormatter()(T0)


def split(lines: list[bytes]) -> list[tuple[bytes, bytes, bytes]]:
    """(stream, tag, content) of CRI lines, checking each line's shape on the way."""
    out = []
    for line in lines:
        assert line.endswith(b"\n")
        stamp, stream, tag, content = line[:-1].split(b" ", 3)
        assert len(stamp) == 30 and stamp.endswith(b"Z")
        out.append((stream, tag, content))
    return out


def test_timestamp_format_is_fixed_width_utc() -> None:
    fmt = TimestampFormatter()
    assert fmt(1_796_119_200_123_456_789) == b"2026-12-01T10:00:00.123456789Z"
    assert fmt(1_796_119_200_000_000_001) == b"2026-12-01T10:00:00.000000001Z"
    assert fmt(1_796_119_201_000_000_000) == b"2026-12-01T10:00:01.000000000Z"


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        (b"2026-12-01T10:00:00.123456789Z", 1_796_119_200_123_456_789),
        (b"2026-12-01T10:00:00.5Z", 1_796_119_200_500_000_000),
        (b"2026-12-01T10:00:00Z", 1_796_119_200_000_000_000),
        (b"2026-12-01T11:00:00.000000001+01:00", 1_796_119_200_000_000_001),
    ],
)
def test_timestamp_parse(text: bytes, nanos: int) -> None:
    assert TimestampParser()(text) == nanos
    assert parse_general(text) == nanos


def test_timestamp_round_trip_and_since() -> None:
    parse, fmt = TimestampParser(), TimestampFormatter()
    for value in (T0, T0 + 1, T0 + 10**9 - 1, 0, 1):
        assert parse(fmt(value)) == value
    assert since_param(1_796_119_200_000_000_042) == "1796119200.000000042"


def test_full_line_and_exact_bytes() -> None:
    lines = CriLogWriter().feed(STDOUT, T0, b"hello\n")
    assert lines == [STAMP + b" stdout F hello\n"]


def test_no_trailing_newline_ends_as_partial() -> None:
    writer = CriLogWriter()
    assert writer.feed(STDOUT, T0, b"abc\ndef") == [STAMP + b" stdout F abc\n"]
    assert writer.pending_since() == T0
    assert split(writer.finish()) == [(b"stdout", b"P", b"def")]
    assert writer.pending_since() is None
    assert writer.finish() == []


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (MAX_LINE - 1, [(b"F", MAX_LINE - 1)]),
        (MAX_LINE, [(b"F", MAX_LINE)]),
        (MAX_LINE + 1, [(b"P", MAX_LINE), (b"F", 1)]),
        (2 * MAX_LINE, [(b"P", MAX_LINE), (b"F", MAX_LINE)]),
        (40000, [(b"P", MAX_LINE), (b"P", MAX_LINE), (b"F", 40000 - 2 * MAX_LINE)]),
    ],
)
def test_long_lines(size: int, expected: list[tuple[bytes, int]]) -> None:
    # containerd's TestLongContainerLog: 16383 -> F, 16384 -> F, 16385 -> P(16384) + F(1).
    for chunking in (None, 1000, MAX_LINE):
        writer = CriLogWriter()
        data = b"x" * size + b"\n"
        lines: list[bytes] = []
        step = chunking or len(data)
        for start in range(0, len(data), step):
            lines += writer.feed(STDOUT, T0, data[start : start + step])
        lines += writer.finish()
        assert [(tag, len(content)) for _, tag, content in split(lines)] == expected


def test_full_buffer_waits_for_the_next_byte() -> None:
    writer = CriLogWriter()
    assert writer.feed(STDOUT, T0, b"y" * MAX_LINE) == []
    assert split(writer.feed(STDOUT, T0 + 5, b"\n")) == [(b"stdout", b"F", b"y" * MAX_LINE)]


def test_long_line_without_newline_at_eof() -> None:
    writer = CriLogWriter()
    lines = writer.feed(STDERR, T0, b"z" * (MAX_LINE + 10)) + writer.finish()
    assert [(t, len(c)) for _, t, c in split(lines)] == [(b"P", MAX_LINE), (b"P", 10)]


def test_stdout_and_stderr_interleave_in_arrival_order() -> None:
    writer = CriLogWriter()
    lines: list[bytes] = []
    lines += writer.feed(STDOUT, T0, b"out-begin ")
    lines += writer.feed(STDERR, T0 + 1, b"err-1\n")
    lines += writer.feed(STDOUT, T0 + 2, b"out-end\n")
    lines += writer.feed(STDERR, T0 + 3, b"err-2\n")
    assert split(lines) == [
        (b"stderr", b"F", b"err-1"),
        (b"stdout", b"F", b"out-begin out-end"),
        (b"stderr", b"F", b"err-2"),
    ]


def test_crlf_is_stripped_once() -> None:
    writer = CriLogWriter()
    lines = writer.feed(STDOUT, T0, b"a\r\nb\r\r\n\r\nc\rd\n")
    assert split(lines) == [
        (b"stdout", b"F", b"a"),
        (b"stdout", b"F", b"b\r"),
        (b"stdout", b"F", b""),
        (b"stdout", b"F", b"c\rd"),
    ]


def test_crlf_split_across_chunks_at_the_limit() -> None:
    # The `\r` that would make a full buffer overflow is stripped once `\n` comes.
    writer = CriLogWriter()
    assert writer.feed(STDOUT, T0, b"q" * MAX_LINE + b"\r") == []
    assert split(writer.feed(STDOUT, T0, b"\n")) == [(b"stdout", b"F", b"q" * MAX_LINE)]


def test_empty_lines() -> None:
    writer = CriLogWriter()
    lines = writer.feed(STDOUT, T0, b"\n\n") + writer.feed(STDERR, T0, b"\n")
    assert lines == [
        STAMP + b" stdout F \n",
        STAMP + b" stdout F \n",
        STAMP + b" stderr F \n",
    ]
    assert writer.feed(STDOUT, T0, b"") == []
    assert writer.finish() == []


def test_line_takes_the_timestamp_of_its_first_byte() -> None:
    fmt = TimestampFormatter()
    writer = CriLogWriter()
    assert writer.feed(STDOUT, T0, b"one") == []
    lines = writer.feed(STDOUT, T0 + 7, b" two\nthree\nfo")
    lines += writer.feed(STDOUT, T0 + 9, b"ur\n")
    assert lines == [
        fmt(T0) + b" stdout F one two\n",
        fmt(T0 + 7) + b" stdout F three\n",
        fmt(T0 + 7) + b" stdout F four\n",
    ]


def test_unknown_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log stream"):
        CriLogWriter().feed("stdin", T0, b"x\n")


def _model(data: bytes, limit: int) -> list[tuple[bytes, bytes]]:
    """The rules stated plainly, for one stream: what any chunking must produce."""
    out: list[tuple[bytes, bytes]] = []
    *lines, rest = data.split(b"\n")
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        while len(line) > limit:
            out.append((b"P", line[:limit]))
            line = line[limit:]
        out.append((b"F", line))
    out += [(b"P", rest[i : i + limit]) for i in range(0, len(rest), limit)]
    return out


@pytest.mark.parametrize("seed", range(40))
def test_any_chunking_gives_the_same_lines(seed: int) -> None:
    rng = random.Random(seed)
    limit = rng.choice([1, 2, 3, 8, 16])
    streams = {
        s: bytes(rng.choice(b"ab\r\n\n") for _ in range(rng.randrange(0, 300)))
        for s in (STDOUT, STDERR)
    }
    writer = CriLogWriter(max_line=limit)
    lines: list[bytes] = []
    offsets = dict.fromkeys(streams, 0)
    while any(offsets[s] < len(d) for s, d in streams.items()):
        stream = rng.choice([s for s, d in streams.items() if offsets[s] < len(d)])
        size = rng.randrange(1, 40)
        start = offsets[stream]
        lines += writer.feed(stream, T0, streams[stream][start : start + size])
        offsets[stream] = start + size
    lines += writer.finish()
    got = split(lines)
    for stream, data in streams.items():
        mine = [(tag, content) for name, tag, content in got if name == stream.encode()]
        assert mine == _model(data, limit), (seed, stream)
