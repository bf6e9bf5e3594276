"""Docker's multiplexed stream format, sans I/O.

When a container has no TTY, Docker sends its stdout and stderr on one connection (logs,
attach, exec) as frames: an 8-byte header (stream id, three zero bytes, big-endian payload
length) then the payload. `StreamDemuxer` takes bytes as they arrive, in any split, and gives
back whole (stream, payload) frames; it touches no socket, so it is tested on byte strings.
"""

from __future__ import annotations

import enum
import struct

HEADER = struct.Struct(">BxxxL")


class Stream(enum.IntEnum):
    STDIN = 0
    STDOUT = 1
    STDERR = 2
    # Docker's own error text, sent when it fails mid-stream (moby stdcopy.Systemerr).
    SYSTEMERR = 3


class DemuxError(ValueError):
    pass


class StreamDemuxer:
    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Stream, bytes]]:
        """Frames completed by `data`; a partial frame waits for the next call."""
        self._buffer += data
        frames: list[tuple[Stream, bytes]] = []
        offset = 0
        while len(self._buffer) - offset >= HEADER.size:
            stream_id, length = HEADER.unpack_from(self._buffer, offset)
            if stream_id not in Stream._value2member_map_:
                raise DemuxError(f"unknown stream id {stream_id} in a Docker stream header")
            end = offset + HEADER.size + length
            if end > len(self._buffer):
                break
            frames.append((Stream(stream_id), bytes(self._buffer[offset + HEADER.size : end])))
            offset = end
        del self._buffer[:offset]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame (non-zero at EOF means the stream was cut)."""
        return len(self._buffer)


def frame(stream: Stream, payload: bytes) -> bytes:
    """One frame in Docker's format (tests and fakes)."""
    return HEADER.pack(int(stream), len(payload)) + payload
