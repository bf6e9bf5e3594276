"""Resuming a CRI log after a cut: what the file holds plus the filtered replay is the whole log.

A simulated journal has Docker's quirks: long lines as pieces that all carry the first piece's
stamp (some with identical content), the other stream's lines landing between those pieces, and
cross-stream stamps a little out of order. For every cut — after any line of the file (a shim
killed between writes) or after any journal entry (a stream that broke while the writer held an
unfinished line) — the resume must neither lose nor repeat a line.
"""

from __future__ import annotations

import os
import random
import tempfile

import pytest

from shim.container.log_resume import ReplayFilter, ResumePoint, line_timestamp, read_file_tail
from shim.container.log_writer import STDERR, STDOUT, CriLogWriter

T0 = 1_796_119_200_000_000_000
LIMIT = 4  # writer line limit and Docker piece size, small to get many pieces

Entry = tuple[str, int, bytes]


def journal(rng: random.Random) -> list[Entry]:
    per_stream: dict[str, list[Entry]] = {}
    for stream in (STDOUT, STDERR):
        clock = T0 + rng.randrange(100)
        entries: list[Entry] = []
        for _ in range(rng.randrange(1, 25)):
            clock += rng.randrange(1, 1000)
            size = rng.choice([0, 1, 3, 4, 5, 8, 9, 13])
            fill = rng.choice([b"a", b"b", None])
            line = fill * size if fill else bytes(rng.choice(b"xyz") for _ in range(size))
            pieces = [line[i : i + LIMIT] for i in range(0, len(line), LIMIT)] or [b""]
            pieces[-1] += b"\n"
            entries += [(stream, clock, piece) for piece in pieces]
        if rng.random() < 0.3:
            entries.append((stream, clock + 1, b"tail"))  # output left without newline
        per_stream[stream] = entries
    merged: list[Entry] = []
    while any(per_stream.values()):
        stream = rng.choice([s for s, e in per_stream.items() if e])
        merged.append(per_stream[stream].pop(0))
    return merged


def run(entries: list[Entry]) -> list[bytes]:
    writer = CriLogWriter(max_line=LIMIT)
    out: list[bytes] = []
    for stream, ts, data in entries:
        writer.feed_into(out, stream, ts, data)
    return out + writer.finish()


def replay(entries: list[Entry], point: ResumePoint) -> list[bytes]:
    since = point.since_ns
    chosen = [e for e in entries if since is None or e[1] >= since]
    writer = CriLogWriter(max_line=LIMIT)
    keep = ReplayFilter(point)
    out: list[bytes] = []
    for stream, ts, data in chosen:
        out += keep.filter(writer.feed(stream, ts, data))
    return out + keep.filter(writer.finish())


@pytest.mark.parametrize("seed", range(60))
def test_cut_after_any_written_line(seed: int) -> None:
    entries = journal(random.Random(seed))
    whole = run(entries)
    for cut in range(len(whole) + 1):
        written = whole[:cut]
        point = ResumePoint.from_lines(written) or ResumePoint()
        assert written + replay(entries, point) == whole, (seed, cut)


@pytest.mark.parametrize("seed", range(60))
def test_cut_after_any_entry_with_unfinished_output(seed: int) -> None:
    entries = journal(random.Random(seed))
    whole = run(entries)
    for cut in range(len(entries) + 1):
        writer = CriLogWriter(max_line=LIMIT)
        written: list[bytes] = []
        for stream, ts, data in entries[:cut]:
            writer.feed_into(written, stream, ts, data)
        point = ResumePoint.from_lines(written, writer.pending_since()) or ResumePoint()
        assert written + replay(entries, point) == whole, (seed, cut)


def test_missing_last_line_ends_skipping_at_the_first_newer_line() -> None:
    writer = CriLogWriter()
    old = writer.feed(STDOUT, T0, b"one\ntwo\n")
    point = ResumePoint.from_lines(old)
    assert point is not None
    lost = CriLogWriter().feed(STDOUT, T0 + 5, b"three\n")  # never the file's last line
    assert ReplayFilter(point).filter(old[:1] + lost) == lost


def test_no_cri_lines_gives_no_point() -> None:
    assert ResumePoint.from_lines([b"garbage\n", b""]) is None
    assert line_timestamp(b"2026-12-01T10:00:00Z stdout F x\n") == T0


def test_file_tail_drops_a_torn_line() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "0.log")
        assert read_file_tail(path) == ([], 0)
        with open(path, "wb") as f:
            f.write(b"a\nb\nhalf a li")
        assert read_file_tail(path) == ([b"a\n", b"b\n"], 4)
