"""Reading one container's log journal from Docker (`GET /containers/{id}/logs`).

cri-shim keeps Docker's json-file log as the durable journal and copies it into the CRI log file
(option A, CRI-CONTAINERS.md §2.5). This module is the Docker half: it asks for the journal with
`timestamps=1` and an optional `since=<seconds>.<nanoseconds>` (inclusive: moby skips only entries
*before* it) and yields `(stream, timestamp_ns, content)` entries.

What the journal looks like (observed on Docker 20.10):
- every entry is `<RFC3339NanoFixed> <content>`; a line's entry ends with `\\n`; a line longer than
  the copier's 16 KiB buffer becomes 16384-byte entries without `\\n` and a last one with it, all
  stamped with the first piece's time; output left without newline at exit is one last entry
  without `\\n`;
- without a TTY each entry is one frame of Docker's 8-byte multiplexed format (`stdcopy`);
- with a TTY there is no framing (and no stderr): entries are simply concatenated. A line entry is
  found by its `\\n`; a 16 KiB piece has none, so it is recognised as 16384 content bytes followed
  by the next entry's fixed-width timestamp.

The body is HTTP/1.1 chunked. Decoding it ourselves from the connection's buffered reader lets one
`read1` return everything that has arrived — often hundreds of entries — so the follower writes
them with one syscall; urllib3's chunk reader would hand over one entry per call.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import requests

from shim.engine.stdcopy import DemuxError, Stream, StreamDemuxer
from shim.timestamps import FIXED_WIDTH, TimestampError, TimestampParser, since_param

log = logging.getLogger(__name__)

# moby daemon/logger/copier.go: the default buffer of the json-file and local drivers.
DOCKER_PIECE = 16 * 1024
READ_SIZE = 256 * 1024

Entry = tuple[str, int, bytes]

_STREAM_NAMES = {Stream.STDOUT: "stdout", Stream.STDERR: "stderr"}
_FIXED_STAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


class JournalError(ValueError):
    """The journal stream is not what Docker sends (or Docker reported an error inside it)."""


class ChunkedDecoder:
    """HTTP/1.1 chunked transfer coding (RFC 9112 §7.1), sans I/O; trailers are ignored.

    Docker flushes after every log entry, so a busy stream is mostly tiny chunks: whole chunks
    take a short path, and `feed` returns their data joined, ready for one demuxer call.
    """

    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # data bytes still due in the current chunk
        self._state = self._SIZE

    @property
    def done(self) -> bool:
        return self._state == self._DONE

    def feed(self, data: bytes) -> bytes:
        buf = self._buffer + data if self._buffer else data
        parts: list[bytes] = []
        pos, size_of = 0, len(buf)
        while pos < size_of:
            state = self._state
            if state == self._DATA:
                take = min(self._left, size_of - pos)
                parts.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                self._state = self._DATA_END
                continue
            if state == self._DONE:  # anything after the last chunk is not ours
                pos = size_of
                break
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if size_of - pos > 4096:
                    raise JournalError("chunked framing: line too long")
                break
            line = buf[pos:eol]
            pos = eol + 2
            if state == self._SIZE:
                try:
                    size = int(line.partition(b";")[0], 16)
                except ValueError as err:
                    raise JournalError(f"chunked framing: bad size {line!r}") from err
                if not size:
                    self._state = self._TRAILER
                    continue
                end = pos + size
                if buf[end : end + 2] == b"\r\n":
                    parts.append(buf[pos:end])
                    pos = end + 2
                    continue
                self._left = size
                self._state = self._DATA
            elif state == self._DATA_END:
                if line:
                    raise JournalError("chunked framing: data not followed by CRLF")
                self._state = self._SIZE
            elif not line:  # the blank line that ends the trailer
                self._state = self._DONE
        self._buffer = buf[pos:]
        return b"".join(parts)


class JournalDecoder:
    """Docker log-stream bytes → `(stream, timestamp_ns, content)` entries, sans I/O."""

    def __init__(self, tty: bool) -> None:
        self._tty = tty
        self._demux = StreamDemuxer()
        self._raw = bytearray()  # TTY only: bytes of unfinished entries
        self._parse = TimestampParser()

    def feed(self, data: bytes, out: list[Entry]) -> None:
        if self._tty:
            self._raw += data
            self._split_tty(out, at_end=False)
            return
        try:
            frames = self._demux.feed(data)
        except DemuxError as err:
            raise JournalError(str(err)) from err
        parse = self._parse
        for stream, payload in frames:
            name = _STREAM_NAMES.get(stream)
            if name is None:
                raise JournalError(f"docker reported: {payload.decode(errors='replace')}")
            space = payload.find(b" ")
            if space < 0:
                raise JournalError(f"journal entry without a timestamp: {payload[:64]!r}")
            try:
                stamp = parse(payload[:space])
            except TimestampError as err:
                raise JournalError(str(err)) from err
            out.append((name, stamp, payload[space + 1 :]))

    def finish(self, out: list[Entry]) -> None:
        """End of the stream: an unfinished TTY entry is output left without newline."""
        if self._tty:
            self._split_tty(out, at_end=True)
        elif self._demux.pending:
            raise JournalError(f"stream cut inside a frame ({self._demux.pending} bytes)")

    def _split_tty(self, out: list[Entry], at_end: bool) -> None:
        raw = self._raw
        pos = 0
        head = FIXED_WIDTH + 1
        while len(raw) - pos >= head:
            if raw[pos + FIXED_WIDTH] != 0x20:
                raise JournalError(
                    f"TTY journal entry without a timestamp: {raw[pos : pos + 64]!r}"
                )
            start = pos + head
            newline = raw.find(b"\n", start, start + DOCKER_PIECE + 1)
            if newline >= 0:
                end = newline + 1
            elif _FIXED_STAMP.match(raw, start + DOCKER_PIECE):
                end = start + DOCKER_PIECE  # a 16 KiB piece of a longer line
            elif at_end:
                end = len(raw)  # the last entry, without newline
            elif len(raw) - start > DOCKER_PIECE + head:
                # No newline, no next stamp where a piece would end: cannot be Docker's.
                raise JournalError("TTY journal entry longer than Docker's 16 KiB pieces")
            else:
                break
            try:
                stamp = self._parse(bytes(raw[pos : pos + FIXED_WIDTH]))
            except TimestampError as err:
                raise JournalError(str(err)) from err
            out.append(("stdout", stamp, bytes(raw[start:end])))
            pos = end
        if at_end and pos < len(raw):
            raise JournalError(f"TTY journal ends inside a timestamp: {raw[pos:]!r}")
        del raw[:pos]


class DockerLogStream:
    """One `GET /containers/{id}/logs` response, read as batches of journal entries.

    `batches()` runs on the follower's thread; `close()` may be called from any thread and wakes a
    blocked read by shutting the socket down. `ended_cleanly` tells a complete response (Docker
    closed it: the container exited, or the journal was read to its end) from a broken one.
    """

    def __init__(
        self,
        client: docker.APIClient,
        container_id: str,
        *,
        follow: bool,
        tty: bool,
        since_ns: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self.container_id = container_id
        self.follow = follow
        self.ended_cleanly = False
        self._tty = tty
        params: dict[str, str | int] = {
            "follow": int(follow),
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
        }
        if since_ns is not None:
            params["since"] = since_param(since_ns)
        api: Any = client  # the SDK's private request helpers are not in its type stubs
        url = api._url("/containers/{0}/logs", container_id)
        # The read timeout is the idle timeout: a follow that hears nothing for that long is
        # given up and re-opened by the caller (moby#37646-style stalls look exactly like this).
        self._response: requests.Response = api._get(
            url, params=params, stream=True, timeout=(30, idle_timeout)
        )
        try:
            api._raise_for_status(self._response)
        except BaseException:
            self._response.close()
            raise
        raw: Any = self._response.raw
        self._chunked = bool(getattr(raw, "chunked", False))
        # urllib3 response → http.client response → the buffered reader over the socket.
        self._reader: Any = raw._fp.fp
        self._closed = False

    def batches(self) -> Iterator[list[Entry]]:
        """Entries as they arrive, one list per read; returns at the end of the response.

        Raises `JournalError` on a malformed stream and `OSError` (including `TimeoutError`)
        when the connection breaks or stays silent past the idle timeout.
        """
        chunks = ChunkedDecoder() if self._chunked else None
        journal = JournalDecoder(self._tty)
        reader = self._reader
        while True:
            if self._closed:
                raise ConnectionAbortedError("log stream closed")
            data = reader.read1(READ_SIZE)
            if self._closed:
                raise ConnectionAbortedError("log stream closed")
            entries: list[Entry] = []
            if not data:
                if chunks is not None and not chunks.done:
                    raise ConnectionResetError("docker closed the log stream mid-response")
                journal.finish(entries)
                self.ended_cleanly = True
                if entries:
                    yield entries
                return
            journal.feed(chunks.feed(data) if chunks is not None else data, entries)
            if chunks is not None and chunks.done:
                journal.finish(entries)
                self.ended_cleanly = True
                if entries:
                    yield entries
                return
            if entries:
                yield entries

    def close(self) -> None:
        """Stop reading (from any thread); idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            sock = self._reader.raw._sock
            sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass
        try:
            self._response.close()
        except Exception:  # closing a half-read response from another thread may complain
            log.debug("closing the log stream of %s", self.container_id, exc_info=True)

    def __enter__(self) -> DockerLogStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_entries(
    client: docker.APIClient, container_id: str, *, tty: bool, since_ns: int | None = None
) -> list[Entry]:
    """The whole journal as it is now (no follow): tests and one-off reads."""
    entries: list[Entry] = []
    with DockerLogStream(client, container_id, follow=False, tty=tty, since_ns=since_ns) as s:
        for batch in s.batches():
            entries += batch
    return entries


STREAM_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    JournalError,
    requests.exceptions.RequestException,
    docker.errors.DockerException,
)
"""What a caller of `DockerLogStream` catches to treat the stream as broken."""
