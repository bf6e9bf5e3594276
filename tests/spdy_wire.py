"""An independent SPDY/3 peer for tests: frames built and parsed by hand with `struct` and
`zlib`, sharing no code with `shim.streaming.spdy` but the dictionary bytes (whose SHA-256 the
header tests pin to moby/spdystream's). It plays the client: it sends what spdystream sends and
reads what a server answers, and it can send anything else a hostile client might."""

from __future__ import annotations

import dataclasses
import struct
import zlib

from shim.streaming.spdy.headers import DICTIONARY

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9,
)  # fmt: skip


def raw_block(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """An uncompressed name/value block exactly as given (no lower-casing, no checks)."""
    out = struct.pack(">I", len(pairs))
    for name, value in pairs:
        out += struct.pack(">I", len(name)) + name + struct.pack(">I", len(value)) + value
    return out


def pairs(headers: dict[str, list[str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), "\0".join(v).encode()) for k, v in headers.items()]


def control(frame_type: int, flags: int, body: bytes, version: int = 3) -> bytes:
    return struct.pack(">HHI", 0x8000 | version, frame_type, (flags << 24) | len(body)) + body


def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
    return struct.pack(">II", stream_id, ((1 if fin else 0) << 24) | len(payload)) + payload


def rst(stream_id: int, status: int) -> bytes:
    return control(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def ping(ping_id: int) -> bytes:
    return control(PING, 0, struct.pack(">I", ping_id))


def goaway(last_good: int, status: int = 0) -> bytes:
    return control(GOAWAY, 0, struct.pack(">II", last_good, status))


def settings(entries: list[tuple[int, int, int]], flags: int = 0) -> bytes:
    body = struct.pack(">I", len(entries))
    for flag, setting_id, value in entries:
        body += struct.pack(">II", (flag << 24) | setting_id, value)
    return control(SETTINGS, flags, body)


def window_update(stream_id: int, delta: int) -> bytes:
    return control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))


NAMES: dict[int, str] = {
    SYN_STREAM: "SYN_STREAM", SYN_REPLY: "SYN_REPLY", RST_STREAM: "RST_STREAM",
    SETTINGS: "SETTINGS", PING: "PING", GOAWAY: "GOAWAY", HEADERS: "HEADERS",
    WINDOW_UPDATE: "WINDOW_UPDATE",
}  # fmt: skip


class PeerEncoder:
    """Header-bearing frames of one direction, with that direction's zlib stream."""

    def __init__(self, level: int = 9) -> None:
        self.zlib = zlib.compressobj(
            level, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY
        )

    def compress(self, raw: bytes) -> bytes:
        return self.zlib.compress(raw) + self.zlib.flush(zlib.Z_SYNC_FLUSH)

    def syn_stream(
        self,
        stream_id: int,
        headers: dict[str, list[str]] | None = None,
        flags: int = 0,
        associated: int = 0,
        priority: int = 0,
        raw: bytes | None = None,
    ) -> bytes:
        block = self.compress(raw if raw is not None else raw_block(pairs(headers or {})))
        fixed = struct.pack(">IIBB", stream_id, associated, priority << 5, 0)
        return control(SYN_STREAM, flags, fixed + block)

    def syn_reply(self, stream_id: int, headers: dict[str, list[str]], flags: int = 0) -> bytes:
        body = struct.pack(">I", stream_id) + self.compress(raw_block(pairs(headers)))
        return control(SYN_REPLY, flags, body)

    def headers(self, stream_id: int, headers: dict[str, list[str]], flags: int = 0) -> bytes:
        body = struct.pack(">I", stream_id) + self.compress(raw_block(pairs(headers)))
        return control(HEADERS, flags, body)


@dataclasses.dataclass
class PeerFrame:
    kind: str  # "DATA" or the control type's name
    flags: int
    stream_id: int = 0
    payload: bytes = b""
    headers: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    values: tuple[int, ...] = ()  # RST (status), PING (id), GOAWAY (last, status), ...


class PeerDecoder:
    """Parses what the server sends, with its own zlib stream."""

    def __init__(self) -> None:
        self.zlib = zlib.decompressobj(15, DICTIONARY)
        self.buffer = b""

    def feed(self, chunk: bytes) -> list[PeerFrame]:
        self.buffer += chunk
        frames = []
        while len(self.buffer) >= 8:
            first, flags_length = struct.unpack_from(">II", self.buffer)
            flags, length = flags_length >> 24, flags_length & 0xFFFFFF
            if len(self.buffer) < 8 + length:
                break
            body, self.buffer = self.buffer[8 : 8 + length], self.buffer[8 + length :]
            if not first & 0x80000000:
                frames.append(PeerFrame("DATA", flags, first, body))
                continue
            assert (first >> 16) & 0x7FFF == 3, "server sent a version other than 3"
            kind = NAMES[first & 0xFFFF]
            if kind in ("SYN_REPLY", "HEADERS"):
                (sid,) = struct.unpack_from(">I", body)
                frames.append(PeerFrame(kind, flags, sid, headers=self._block(body[4:])))
            elif kind == "SYN_STREAM":
                (sid,) = struct.unpack_from(">I", body)
                frames.append(PeerFrame(kind, flags, sid, headers=self._block(body[10:])))
            else:
                words = struct.unpack(f">{len(body) // 4}I", body)
                sid = words[0] if kind in ("RST_STREAM", "WINDOW_UPDATE") else 0
                frames.append(PeerFrame(kind, flags, sid, values=words))
        return frames

    def _block(self, compressed: bytes) -> dict[str, list[str]]:
        raw = self.zlib.decompress(compressed)
        (count,) = struct.unpack_from(">I", raw)
        pos, out = 4, {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", raw, pos)
            name = raw[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
            (n,) = struct.unpack_from(">I", raw, pos)
            out[name] = raw[pos + 4 : pos + 4 + n].decode().split("\0")
            pos += 4 + n
        assert pos == len(raw), "bytes after the header block"
        return out
