"""Reading a container's json-file log journal straight from Docker's files.

cri-shim keeps Docker's json-file log as the durable journal and copies it into the CRI log file
(option A, CRI-CONTAINERS.md §2.5). Docker's logs API serves that journal at only ~18-20 MB/s on a
quiet machine (dockerd decodes the json-file and re-encodes every entry), far less under load, so a
container writing faster outran the follower until whole journal files were rotated away unread.
This module reads the files themselves, which the shim (root, on Docker's host) can.

What the journal looks like (moby 20.10 `daemon/logger/jsonfilelog`, `loggerutils/logfile.go`):
- `LogPath` (`/var/lib/docker/containers/<id>/<id>-json.log`) holds one JSON object a line,
  `{"log":"...","stream":"stdout"|"stderr","time":"<RFC3339Nano>"}`, keys in that order (an
  `attrs` key before `time` only with the `labels`/`env` log options, which cri-shim never sets);
  each entry is one `write`, so only the last line of a file can be unfinished, and only while
  Docker is writing it;
- `log` is exactly what the logs API sends: a line's entry ends with `\\n`; a line longer than
  the copier's 16 KiB buffer becomes pieces without `\\n`, all stamped with the first piece's
  time; output left without newline at exit is one last entry without `\\n`;
- `time` is Go's RFC3339Nano in UTC: trailing zeros of the fraction are dropped, so the fixed-width
  form the CRI file uses is the same text padded with zeros;
- rotation (`max-size`, `max-file`; compression off, which cri-shim never turns on) closes the
  file, renames `<path>.N-1` → `<path>.N` … `<path>` → `<path>.1` (the oldest is deleted) and
  creates a new `<path>`, all under the writer's lock: once a new inode is at `<path>`, the old
  file is complete. With `max-file` 1 the file is truncated in place instead.

`JsonLogDecoder` is sans-IO: lines of bytes in, `(stream, stamp, content)` entries out, with the
stamp already in the CRI file's fixed-width text (no parsing and formatting per line). Most lines
are one short line of plain text; one regular expression recognises those and hands their content
over as it is, in one C call for a whole chunk; anything else (escapes, pieces, attrs) is decoded
with `json.loads`.

`JsonFileJournal` is the I/O half: an open file descriptor keeps a renamed or even deleted file
readable, so it holds the file being read, opens each new inode at `<path>` as soon as it appears
(at every end of file, and every `ROTATION_CHECK_S` while reading) and reads the files strictly in
order, each to its end. A rotation loses nothing, however far behind the reader is, unless Docker
rotates through every rotated file between two checks; that is detected and counted, not silent.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from shim.timestamps import FIXED_WIDTH, TimestampError, TimestampFormatter, parse_general

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
ROTATION_CHECK_S = 0.01
# A file last written this long before the resume point holds only older entries (an entry's
# stamp is taken before it is written; mtime is the kernel's coarse clock, a few ms behind).
MTIME_SLACK_NS = 1_000_000_000

Entry = tuple[str, bytes, bytes]
"""(stream name, fixed-width RFC 3339 stamp, content)."""

_STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}
_TIME = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z"
# One line of plain text with its newline (no escapes, so the bytes between the quotes are the
# content), or else any line, for `json.loads`. Every line matches one of the two.
_LINE = re.compile(
    rb'\{"log":"([^"\\\n]*)\\n","stream":"(stdout|stderr)","time":"(' + _TIME + rb')"\}\n'
    rb"|([^\n]*)\n"
)
_TIME_TEXT = re.compile(_TIME.decode())
_ZEROS = b"000000000"


class JournalError(ValueError):
    """A journal line that is not Docker's json-file format."""


def fixed_stamp(text: bytes) -> bytes:
    """Go's RFC3339Nano UTC text (`...:05.12Z`) → the fixed-width `...:05.120000000Z`."""
    if len(text) == FIXED_WIDTH:
        return text
    if len(text) == 20:  # no fraction at all
        return text[:19] + b"." + _ZEROS + b"Z"
    return text[:-1] + _ZEROS[: FIXED_WIDTH - len(text)] + b"Z"


class JsonLogDecoder:
    """json-file lines → entries, dropping those stamped before `since` (the resume point,
    inclusive like the logs API's `since`: moby skips only entries *before* it)."""

    def __init__(self, since_ns: int | None = None) -> None:
        self._since = TimestampFormatter()(since_ns) if since_ns is not None else None
        self._format = TimestampFormatter()
        self.bad_lines = 0

    def decode(self, chunk: bytes) -> list[Entry]:
        """Entries of `chunk`, whole lines each ending with `\\n`. A line that is not a journal
        entry is dropped with a warning (counted in `bad_lines`): one bad line must not stop a
        container's log."""
        entries: list[Entry] = []
        append = entries.append
        since = self._since
        names = _STREAMS
        width = FIXED_WIDTH
        for content, stream, stamp, other in _LINE.findall(chunk):
            if stream:
                if len(stamp) != width:
                    stamp = fixed_stamp(stamp)
                if since is None or stamp >= since:
                    append((names[stream], stamp, content + b"\n"))
                continue
            try:
                entry = self._decode_other(other)
            except JournalError as err:
                self.bad_lines += 1
                if self.bad_lines == 1 or self.bad_lines % 1000 == 0:
                    log.warning("%s (%d bad journal lines)", err, self.bad_lines)
                continue
            if since is None or entry[1] >= since:
                append(entry)
        return entries

    def _decode_other(self, line: bytes) -> Entry:
        try:
            obj: Any = json.loads(line)
            text, stream, stamp = obj["log"], obj["stream"], obj["time"]
        except (ValueError, TypeError, KeyError) as err:
            raise JournalError(f"not a json-file journal line: {line[:80]!r}") from err
        if not isinstance(text, str) or stream not in ("stdout", "stderr"):
            raise JournalError(f"not a json-file journal line: {line[:80]!r}")
        if not isinstance(stamp, str):
            raise JournalError(f"journal line without a time: {line[:80]!r}")
        if _TIME_TEXT.fullmatch(stamp):
            fixed = fixed_stamp(stamp.encode())
        else:  # another offset than Z: not what Docker writes, but a valid time
            try:
                fixed = self._format(parse_general(stamp.encode()))
            except TimestampError as err:
                raise JournalError(f"journal line with a bad time: {line[:80]!r}") from err
        # Docker's encoder replaces invalid UTF-8 with U+FFFD; `surrogatepass` keeps a stray
        # `\\ud800` escape from another writer instead of failing on it.
        return (stream, fixed, text.encode("utf-8", "surrogatepass"))


@dataclass
class _File:
    fd: int
    ino: tuple[int, int]  # (st_dev, st_ino)
    name: str
    offset: int = 0


@dataclass(frozen=True)
class JournalStats:
    rotations: int
    lost_files: int


class JsonFileJournal:
    """One container's journal files, read in order across rotations (see the module docstring).

    `read()` returns whole lines, or b"" at the end of the newest file. Not thread-safe: one
    follower thread owns it; `close()` from that thread.
    """

    def __init__(self, path: str, max_files: int, container_id: str) -> None:
        self.path = path
        self.container_id = container_id
        self._max_files = max(1, max_files)
        self._files: deque[_File] = deque()  # the file being read first; newest last
        self._rest = b""  # an unfinished last line of the file being read
        self._next_check = 0.0
        self.rotations = 0
        self.lost_files = 0

    # ---- opening ----------------------------------------------------------------------------

    def open_existing(self, skip_before_ns: int | None = None) -> bool:
        """Open `<path>.N` … `<path>.1`, `<path>` as they are now, oldest first, leaving out
        files last written well before `skip_before_ns`. False if there is no journal at all."""
        found: list[_File] = []  # newest first
        seen: set[tuple[int, int]] = set()
        # Newest first: a rotation while we look shifts files towards older names, so a file is
        # met twice at worst (deduplicated by inode), never missed.
        for name in self._names():
            opened = _open(name)
            if opened is None:
                if name == self.path:
                    continue  # between a rotation's rename and create
                break
            file, st = opened
            if file.ino in seen:
                os.close(file.fd)
                continue
            if (
                found
                and skip_before_ns is not None
                and st.st_mtime_ns + MTIME_SLACK_NS < skip_before_ns
            ):
                os.close(file.fd)
                break  # this file and every older one end before the resume point
            seen.add(file.ino)
            found.append(file)
        self._files.extend(reversed(found))
        return bool(found)

    def _names(self) -> list[str]:
        return [self.path] + [f"{self.path}.{i}" for i in range(1, self._max_files)]

    def check_rotation(self) -> None:
        """Queue a new file at `<path>` (and rotated files we never opened that are still
        there); count a loss if files were rotated away before we could open them."""
        self._next_check = time.monotonic() + ROTATION_CHECK_S
        if not self._files:
            return
        newest = self._files[-1]
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return  # the container is being removed; what we hold stays readable
        if (st.st_dev, st.st_ino) == newest.ino:
            return
        opened = _open(self.path)
        if opened is None:
            return
        new, _ = opened
        known = {f.ino for f in self._files}
        if new.ino in known:
            os.close(new.fd)
            return
        known.add(new.ino)
        # Rotated files between our newest and the new one: opened late, but still readable.
        missed: list[_File] = []
        reached = False
        for name in self._names()[1:]:
            older = _open(name)
            if older is None:
                break
            file = older[0]
            if file.ino == newest.ino:
                os.close(file.fd)
                reached = True
                break
            if file.ino in known:
                os.close(file.fd)
                continue
            known.add(file.ino)
            missed.append(file)
        if not reached:
            # Our newest file is under no rotated name: Docker rotated at least `max_files`
            # times since we looked. Exactly that many loses nothing (all files after ours are
            # still here, found above); more deleted the one after ours unread. The two cannot
            # be told apart, so this counts as a loss.
            self.lost_files += 1
            log.warning(
                "json-file journal of container %s rotated %d times or more before it was read: "
                "lines are probably missing from the CRI log (%d such losses)",
                self.container_id,
                self._max_files,
                self.lost_files,
            )
        elif missed:
            log.info(
                "json-file journal of container %s: %d rotated file(s) found late, reading them",
                self.container_id,
                len(missed),
            )
        self._files.extend(reversed(missed))
        self._files.append(new)
        self.rotations += 1 + len(missed)

    # ---- reading ----------------------------------------------------------------------------

    def read(self) -> bytes:
        """The next whole lines in journal order; b"" when the newest file is read to its end
        (call again later: Docker may append or rotate)."""
        while self._files:
            if time.monotonic() >= self._next_check:
                self.check_rotation()
            file = self._files[0]
            data = os.read(file.fd, READ_SIZE)
            if data:
                file.offset += len(data)
                if self._rest:
                    data = self._rest + data
                end = data.rfind(b"\n") + 1
                self._rest = data[end:]
                if end:
                    return data[:end]
                continue
            if len(self._files) == 1:
                # The newest file, or Docker truncated it in place (max-file 1).
                if os.fstat(file.fd).st_size < file.offset:
                    self._truncated(file)
                    continue
                # A rotation may have happened after our last check; then this file is complete
                # only once we read it again to its end.
                self.check_rotation()
                if len(self._files) == 1:
                    return b""
                continue
            # A newer file was queued before this read: this one is complete.
            if self._rest:
                log.warning(
                    "json-file journal of container %s: file %s ends in an unfinished line; "
                    "dropped",
                    self.container_id,
                    file.name,
                )
                self._rest = b""
            os.close(file.fd)
            self._files.popleft()
        return b""

    def _truncated(self, file: _File) -> None:
        self.lost_files += 1
        log.warning(
            "json-file journal of container %s was truncated before it was read to its end "
            "(max-file 1); continuing at its start",
            self.container_id,
        )
        os.lseek(file.fd, 0, os.SEEK_SET)
        file.offset = 0
        self._rest = b""

    def stats(self) -> JournalStats:
        return JournalStats(self.rotations, self.lost_files)

    def close(self) -> None:
        while self._files:
            os.close(self._files.popleft().fd)


def _open(name: str) -> tuple[_File, os.stat_result] | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    st = os.fstat(fd)
    return _File(fd, (st.st_dev, st.st_ino), name), st
