"""The CRI container log format, sans I/O.

kubelet, crictl and critest read a container's log file as lines of
`<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>\\n` (CRI-CONTAINERS.md §2.1), where P
marks a piece of a line that goes on in the next P or F line. `CriLogWriter` takes output as it
arrives, `(stream, timestamp, bytes)`, and returns finished CRI lines as bytes; it never touches a
file, so its rules are tested on byte strings and the follower around it only moves bytes.

The rules are containerd's (`internal/cri/io/logger.go`, CRI-CONTAINERS.md §2.2):
- one buffer per stream, so a stderr line can finish between two pieces of a long stdout line;
  lines come out in the order they finish;
- a line ends at `\\n`; one `\\r` just before it is dropped;
- at most `max_line` (16 KiB) content bytes per CRI line: a longer line becomes P lines of
  exactly `max_line` bytes and a final F line. A line of exactly `max_line` bytes is one F line,
  so a full buffer waits for the next byte before it can say P or F;
- output that has no newline when the stream ends (`finish`) becomes P lines;
- a line carries the timestamp of the chunk that brought its first byte, and so do all the
  pieces of a long line (as Docker stamps every partial entry of a line with the first one's time).
"""

from __future__ import annotations

from collections.abc import Iterable

from shim.timestamps import TimestampFormatter, TimestampParser

STDOUT = "stdout"
STDERR = "stderr"
MAX_LINE = 16 * 1024

_CR = 0x0D
# (partial tag, full tag) with the spaces around them, ready to sit between stamp and content.
_TAGS = {
    STDOUT: (b" stdout P ", b" stdout F "),
    STDERR: (b" stderr P ", b" stderr F "),
}


class CriLogWriter:
    """Turns (stream, timestamp, chunk) events into CRI log lines; see the module docstring."""

    __slots__ = ("_format", "_max", "_parse", "_pending", "_pending_ts")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._max = max_line
        # Per stream: the unfinished line (never empty) and the timestamp of its first byte.
        # Insertion order is the order in which the pending lines began.
        self._pending: dict[str, bytes] = {}
        self._pending_ts: dict[str, int] = {}
        self._format = TimestampFormatter()
        self._parse = TimestampParser()

    def feed(self, stream: str, timestamp_ns: int, data: bytes) -> list[bytes]:
        """The CRI lines that `data` finishes (each ends with `\\n`)."""
        out: list[bytes] = []
        self.feed_into(out, stream, timestamp_ns, data)
        return out

    def feed_into(self, out: list[bytes], stream: str, timestamp_ns: int, data: bytes) -> None:
        """`feed` appending to a caller's list: the follower builds one list per network read."""
        try:
            partial_tag, full_tag = _TAGS[stream]
        except KeyError:
            raise ValueError(f"unknown log stream {stream!r}") from None
        limit = self._max
        pending = self._pending.pop(stream, None)
        if pending is None:
            if not data:
                return
            first_ts = timestamp_ns
            # Fast path, the usual Docker entry: exactly one short line with its newline.
            if (
                len(data) <= limit + 1
                and data.find(b"\n") == len(data) - 1
                and (len(data) < 2 or data[-2] != _CR)
            ):
                out.append(self._format(timestamp_ns) + full_tag + data)
                return
        else:
            first_ts = self._pending_ts.pop(stream)
            data = pending + data
        stamp = self._format(first_ts)
        start = 0
        find = data.find
        while (newline := find(b"\n", start)) >= 0:
            end = newline - 1 if newline > start and data[newline - 1] == _CR else newline
            if end - start > limit:
                head = stamp + partial_tag
                while end - start > limit:
                    out.append(head + data[start : start + limit] + b"\n")
                    start += limit
            out.append(stamp + full_tag + data[start:end] + b"\n")
            start = newline + 1
            if start < len(data) and first_ts != timestamp_ns:
                # Every later line began inside this chunk.
                first_ts = timestamp_ns
                stamp = self._format(timestamp_ns)
        rest = len(data) - start
        if not rest:
            return
        if rest > limit:
            # A full buffer may still end in F; one more byte past it, or a `\r` that the next
            # `\n` would strip, is what decides.
            head = stamp + partial_tag
            while rest > limit and not (rest == limit + 1 and data[-1] == _CR):
                out.append(head + data[start : start + limit] + b"\n")
                start += limit
                rest -= limit
        self._pending[stream] = data[start:]
        self._pending_ts[stream] = first_ts

    def feed_stamped(self, out: list[bytes], entries: Iterable[tuple[str, bytes, bytes]]) -> None:
        """`feed_into` for many `(stream, stamp, chunk)` entries whose stamp is already the
        fixed-width text the CRI lines carry (`2026-12-01T10:00:00.123456789Z`, as
        `shim.engine.docker_journal` gives it): the follower's hot loop. An entry that is exactly
        one short line, with nothing pending on its stream, becomes its CRI line without parsing
        or formatting the stamp; anything else takes `feed_into`."""
        pending = self._pending
        limit = self._max + 1
        append = out.append
        tags = _TAGS.get
        for stream, stamp, data in entries:
            size = len(data)
            tag = tags(stream)
            if (
                tag is not None
                and stream not in pending
                and 0 < size <= limit
                and data.find(b"\n") == size - 1
                and (size < 2 or data[-2] != _CR)
            ):
                append(stamp + tag[1] + data)
            else:
                self.feed_into(out, stream, self._parse(stamp), data)

    def finish(self) -> list[bytes]:
        """End of both streams: every unfinished line becomes P lines, oldest first."""
        out: list[bytes] = []
        order = sorted(self._pending, key=self._pending_ts.__getitem__)
        for stream in order:
            data = self._pending.pop(stream)
            head = self._format(self._pending_ts.pop(stream)) + _TAGS[stream][0]
            for start in range(0, len(data), self._max):
                out.append(head + data[start : start + self._max] + b"\n")
        return out

    def pending_since(self) -> int | None:
        """Timestamp of the oldest byte not yet in a CRI line (a resume must re-read it)."""
        return min(self._pending_ts.values()) if self._pending_ts else None
