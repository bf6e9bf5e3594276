"""Where a log follower resumes, and which replayed CRI lines it must not write again.

A follower that starts over (the shim was killed, or Docker's follow stream broke) asks Docker for
the journal `since` some time and feeds it through a fresh `CriLogWriter`. Re-reading from exactly
the right entry is impossible: journal timestamps are not strictly ordered — every piece of a long
line carries the first piece's time, and the stdout and stderr copiers race by microseconds
(observed: a stderr line stamped after a long stdout line lands between its pieces). So a resume
re-reads generously and drops what the file already holds:

- `since` is the oldest timestamp among the last `TAIL_LINES` lines written (and of any output the
  old writer still held unfinished), less a margin, so every entry near the cut is read again;
- a fresh writer fed with the same entries from a piece boundary gives byte-identical lines, so
  the replay is skipped up to and including the copy of the file's last line (counting identical
  pieces of one long line); everything after it is new;
- if that line never comes (the journal lost it to rotation), the first unknown line stamped later
  than it ends the skipping.

What can still go wrong is stated where it can: a line whose first piece is older than the whole
window and that finishes after the cut is re-read only from `since`, so its early pieces are lost.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from shim.timestamps import FIXED_WIDTH, TimestampError, TimestampParser, parse_general

log = logging.getLogger(__name__)

TAIL_LINES = 1024
TAIL_BYTES = 4 * 1024 * 1024
# Re-read this much before the oldest line of the window too: entries of the other stream can
# carry a slightly older stamp than lines written before them. Anything re-read that the file
# already holds comes before its last line in the replay and is skipped with the rest.
SINCE_MARGIN_NS = 250_000_000


@dataclass(frozen=True)
class ResumePoint:
    """Where to re-read from, and the newest line already written (None: nothing written)."""

    since_ns: int | None = None
    last_line: bytes | None = None
    last_line_copies: int = 0
    last_ts: int = 0
    window: frozenset[bytes] = frozenset()

    @classmethod
    def from_lines(
        cls, lines: Sequence[bytes], pending_since: int | None = None
    ) -> ResumePoint | None:
        """The point after `lines` (the newest CRI lines written, oldest first) and unfinished
        output stamped `pending_since`. None when none of `lines` is a CRI line: then the
        caller keeps its previous point, which already covers anything pending (a session reads
        only entries at or after its point)."""
        parse = TimestampParser()
        stamps: list[int] = []
        kept: list[bytes] = []
        for line in lines[-TAIL_LINES:]:
            stamp = line_timestamp(line, parse)
            if stamp is not None:
                stamps.append(stamp)
                kept.append(line)
        if not kept:
            return None
        since = min(stamps)
        if pending_since is not None:
            since = min(since, pending_since)
        since = max(0, since - SINCE_MARGIN_NS)
        last = kept[-1]
        return cls(
            since_ns=since,
            last_line=last,
            last_line_copies=kept.count(last),
            last_ts=stamps[-1],
            window=frozenset(kept),
        )


def line_timestamp(line: bytes, parse: TimestampParser | None = None) -> int | None:
    """The timestamp of a CRI line, or None if it is not one."""
    space = line.find(b" ", 0, 64)
    if space < 0:
        return None
    try:
        if space == FIXED_WIDTH and parse is not None:
            return parse(line[:space])
        return parse_general(line[:space])
    except TimestampError:
        return None


def read_file_tail(path: str) -> tuple[list[bytes], int]:
    """The last whole lines of a CRI log file and the byte length of its whole lines.

    A shim killed inside a write can leave a torn last line; it is not part of the tail, and the
    returned length lets the caller cut it off before appending the line again.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return [], 0
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - TAIL_BYTES)
        data = os.pread(fd, size - start, start)
    finally:
        os.close(fd)
    whole = data.rfind(b"\n") + 1
    complete = start + whole
    lines = data[:whole].splitlines(keepends=True)
    if start and lines:
        lines = lines[1:]  # the read began inside a line
    return lines[-TAIL_LINES:], complete


class ReplayFilter:
    """Drops the replayed lines up to the resume point; afterwards it passes everything."""

    def __init__(self, point: ResumePoint) -> None:
        self._point = point
        self._seen = 0
        self._parse = TimestampParser()
        self.done = point.last_line is None
        self.skipped = 0

    def filter(self, lines: list[bytes]) -> list[bytes]:
        if self.done:
            return lines
        point = self._point
        for index, line in enumerate(lines):
            if line == point.last_line:
                self._seen += 1
                if self._seen >= point.last_line_copies:
                    self.done = True
                    self.skipped += index + 1
                    return lines[index + 1 :]
                continue
            if line in point.window:
                continue
            stamp = line_timestamp(line, self._parse)
            if stamp is not None and stamp > point.last_ts:
                log.warning(
                    "log resume: the last line written was not in the journal again; "
                    "continuing at the first newer line"
                )
                self.done = True
                self.skipped += index
                return lines[index:]
        self.skipped += len(lines)
        return []
