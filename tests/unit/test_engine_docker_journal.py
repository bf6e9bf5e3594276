"""Docker's json-file journal read from its files: line decoding, and rotation while behind."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from shim.container.log_writer import CriLogWriter
from shim.engine.docker_journal import JsonFileJournal, JsonLogDecoder, fixed_stamp
from shim.timestamps import TimestampFormatter

T0 = 1_796_119_200_000_000_000
FMT = TimestampFormatter()


def go_time(ts: int) -> str:
    """Go's RFC3339Nano: trailing zeros of the fraction dropped, no fraction if it is zero."""
    text = FMT(ts).decode()
    frac = text[20:29].rstrip("0")
    return text[:19] + ("." + frac if frac else "") + "Z"


def jline(content: str, stream: str = "stdout", ts: int = T0) -> bytes:
    # Go's encoder: separators without spaces, <>& escaped, non-ASCII raw.
    text = json.dumps(content, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
    time_text = go_time(ts)
    return f'{{"log":{text},"stream":"{stream}","time":"{time_text}"}}\n'.encode()


@pytest.mark.parametrize(
    ("text", "fixed"),
    [
        (b"2026-12-01T10:00:00.123456789Z", b"2026-12-01T10:00:00.123456789Z"),
        (b"2026-12-01T10:00:00.12Z", b"2026-12-01T10:00:00.120000000Z"),
        (b"2026-12-01T10:00:00Z", b"2026-12-01T10:00:00.000000000Z"),
    ],
)
def test_fixed_stamp(text: bytes, fixed: bytes) -> None:
    assert fixed_stamp(text) == fixed


def test_decode_plain_escaped_pieces_and_tty() -> None:
    chunk = b"".join(
        [
            jline("hello\n", ts=T0 + 120_000_000),
            jline('a\tb<>& \\ "q" € \ufffd\r\n', ts=T0 + 1),
            jline("err\n", "stderr", T0 + 2),
            jline("x" * 5, ts=T0 + 3),  # a piece: no newline
            jline("nonl", ts=T0),
            b'{"log":"with attrs\\n","stream":"stdout","attrs":{"a":"b"},"time":"'
            + go_time(T0 + 4).encode()
            + b'"}\n',
        ]
    )
    assert JsonLogDecoder().decode(chunk) == [
        ("stdout", b"2026-12-01T10:00:00.120000000Z", b"hello\n"),
        ("stdout", FMT(T0 + 1), 'a\tb<>& \\ "q" € \ufffd\r\n'.encode()),
        ("stderr", FMT(T0 + 2), b"err\n"),
        ("stdout", FMT(T0 + 3), b"xxxxx"),
        ("stdout", FMT(T0), b"nonl"),
        ("stdout", FMT(T0 + 4), b"with attrs\n"),
    ]


def test_decode_drops_bad_lines_and_entries_before_since() -> None:
    decoder = JsonLogDecoder(since_ns=T0 + 10)
    chunk = jline("old\n", ts=T0 + 9) + b"garbage\n" + b"{}\n" + jline("new\n", ts=T0 + 10)
    assert decoder.decode(chunk) == [("stdout", FMT(T0 + 10), b"new\n")]
    assert decoder.bad_lines == 2


def test_stamped_feed_matches_the_plain_writer() -> None:
    events = [
        ("stdout", T0, b"x" * 5),
        ("stderr", T0 + 1, b"err\n"),
        ("stdout", T0, b"yy\n"),
        ("stdout", T0 + 2, b"win\r\n"),
        ("stdout", T0 + 3, b"\n"),
        ("stdout", T0 + 4, b"a\nb\n"),
        ("stdout", T0 + 5, b""),
        ("stderr", T0 + 6, b"abcd\n"),
        ("stderr", T0 + 7, b"abcde\n"),
    ]
    plain, stamped = CriLogWriter(max_line=4), CriLogWriter(max_line=4)
    want: list[bytes] = []
    for stream, ts, data in events:
        plain.feed_into(want, stream, ts, data)
    got: list[bytes] = []
    stamped.feed_stamped(got, [(s, FMT(ts), d) for s, ts, d in events])
    assert got == want
    assert stamped.finish() == plain.finish()


# ---- the files ----------------------------------------------------------------------------


class Docker:
    """Docker's json-file writer, imitated: append, and rotate as moby does (no compression)."""

    def __init__(self, path: pathlib.Path, max_files: int) -> None:
        self.path = path
        self.max_files = max_files
        self.n = 0

    def write(self, count: int) -> None:
        with open(self.path, "ab") as f:
            for _ in range(count):
                f.write(jline(f"{self.n}\n", ts=T0 + self.n))
                self.n += 1

    def rotate(self) -> None:
        for i in range(self.max_files - 1, 1, -1):
            older = pathlib.Path(f"{self.path}.{i - 1}")
            if older.exists():
                os.rename(older, f"{self.path}.{i}")
        os.rename(self.path, f"{self.path}.1")
        self.path.touch()


def read_all(journal: JsonFileJournal) -> list[int]:
    decoder = JsonLogDecoder()
    numbers: list[int] = []
    while chunk := journal.read():
        numbers += [int(data) for _, _, data in decoder.decode(chunk)]
    return numbers


@pytest.fixture
def docker_files(tmp_path: pathlib.Path) -> Docker:
    return Docker(tmp_path / "c-json.log", max_files=3)


def test_existing_files_are_read_oldest_first(docker_files: Docker) -> None:
    docker_files.write(10)
    docker_files.rotate()
    docker_files.write(10)
    docker_files.rotate()
    docker_files.write(5)
    journal = JsonFileJournal(str(docker_files.path), 3, "c")
    assert journal.open_existing()
    assert read_all(journal) == list(range(25))
    journal.close()


def test_rotations_while_behind_lose_nothing(docker_files: Docker) -> None:
    docker_files.write(3)
    journal = JsonFileJournal(str(docker_files.path), 3, "c")
    assert journal.open_existing()
    assert read_all(journal) == [0, 1, 2]
    docker_files.write(4)
    docker_files.rotate()  # the file we hold is now <path>.1
    docker_files.write(4)
    docker_files.rotate()  # and <path>.2; the one between was never opened
    docker_files.write(2)
    assert read_all(journal) == list(range(3, 13))
    assert (journal.rotations, journal.lost_files) == (2, 0)
    # Held open, a file survives its deletion by the next rotations.
    journal.check_rotation()
    docker_files.write(1)
    docker_files.rotate()
    docker_files.write(1)
    journal.check_rotation()
    for _ in range(3):
        docker_files.rotate()
    docker_files.write(1)
    assert read_all(journal) == [13, 14, 15]
    journal.close()


def test_a_file_rotated_away_unread_is_counted(docker_files: Docker) -> None:
    docker_files.write(2)
    journal = JsonFileJournal(str(docker_files.path), 3, "c")
    assert journal.open_existing()
    for _ in range(4):  # past every rotated name: the file after ours is deleted unread
        docker_files.write(2)
        docker_files.rotate()
    docker_files.write(1)
    numbers = read_all(journal)
    assert journal.lost_files == 1
    assert numbers == [0, 1, 2, 3, 6, 7, 8, 9, 10]  # 4, 5 were in the lost file
    journal.close()


def test_resume_skips_files_written_before_the_resume_point(docker_files: Docker) -> None:
    docker_files.write(3)
    docker_files.rotate()
    os.utime(f"{docker_files.path}.1", ns=(T0, T0))
    docker_files.write(3)
    journal = JsonFileJournal(str(docker_files.path), 3, "c")
    assert journal.open_existing(skip_before_ns=T0 + 5_000_000_000)
    assert read_all(journal) == [3, 4, 5]
    journal.close()


def test_no_journal(tmp_path: pathlib.Path) -> None:
    assert not JsonFileJournal(str(tmp_path / "none"), 2, "c").open_existing()
