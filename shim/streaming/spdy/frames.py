"""SPDY/3.1 frames (draft 3 §2.2, §2.6) as dataclasses, and their encoder and decoder.

Both are sans-IO: `FrameDecoder.feed()` takes bytes as they arrive and `next_frame()` hands out
whole frames; `FrameEncoder.encode()` returns bytes. Each owns the zlib context of its direction
(`headers`), so one connection needs exactly one of each, used in frame order.

Layout of the 8-byte header:

    control: |1| version (15) | type (16) |  flags (8) | length (24) |
    data:    |0| stream id (31)           |  flags (8) | length (24) |

Reserved bits (the top bit of every stream id field) are ignored on receipt and sent as zero.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import TypeAlias

from shim.streaming.spdy.constants import (
    FLAG_FIN,
    FLAG_SETTINGS_CLEAR_SETTINGS,
    FLAG_UNIDIRECTIONAL,
    FRAME_HEADER_LENGTH,
    MAX_FRAME_LENGTH,
    MAX_STREAM_ID,
    VERSION,
    FrameType,
)
from shim.streaming.spdy.errors import SpdyProtocolError
from shim.streaming.spdy.headers import (
    HeaderBlock,
    HeaderCompressor,
    HeaderDecompressor,
)
from shim.streaming.spdy.limits import SpdyLimits

_U32 = struct.Struct(">I")
_TWO_U32 = struct.Struct(">II")
_HEADER = struct.Struct(">HHI")  # control-bit+version, type, flags<<24|length
_SYN_STREAM_FIXED = struct.Struct(">IIBB")  # stream id, associated id, priority<<5, slot


@dataclasses.dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: HeaderBlock
    associated_to_stream_id: int = 0
    priority: int = 0
    """0 (highest) to 7; 3 bits on the wire."""
    slot: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    headers: HeaderBlock
    fin: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int
    """An `RstStatus` value; kept an int so that a status newer than ours still decodes."""


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    id: int
    value: int
    flags: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    settings: tuple[Setting, ...] = ()
    clear_settings: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    ping_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0
    """A `GoAwayStatus` value."""


@dataclasses.dataclass(frozen=True, slots=True)
class Headers:
    stream_id: int
    headers: HeaderBlock
    fin: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    delta_window_size: int


@dataclasses.dataclass(frozen=True, slots=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool = False


Frame: TypeAlias = (
    SynStream | SynReply | RstStream | Settings | Ping | GoAway | Headers | WindowUpdate | Data
)


def encode_control_header(frame_type: FrameType, flags: int, length: int) -> bytes:
    return _HEADER.pack(0x8000 | VERSION, frame_type, (flags << 24) | length)


def encode_data_header(stream_id: int, fin: bool, length: int) -> bytes:
    """The 8 bytes before a DATA payload; the connection writes payloads without copying."""
    _check_stream_id("DATA", stream_id)
    if not 0 <= length <= MAX_FRAME_LENGTH:
        raise ValueError(f"failed to encode DATA on stream {stream_id}: {length} bytes")
    return _TWO_U32.pack(stream_id, ((FLAG_FIN if fin else 0) << 24) | length)


def _check_stream_id(what: str, stream_id: int, zero_ok: bool = False) -> None:
    if not (0 if zero_ok else 1) <= stream_id <= MAX_STREAM_ID:
        raise ValueError(f"failed to encode {what}: stream id {stream_id} out of range")


class FrameEncoder:
    """Turns frames into bytes for one direction of one connection (it owns that direction's
    header compressor, so every frame must go through the same encoder, in send order)."""

    def __init__(self) -> None:
        self._compressor = HeaderCompressor()

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case Data(stream_id, data, fin):
                return encode_data_header(stream_id, fin, len(data)) + data
            case SynStream():
                return self._syn_stream(frame)
            case SynReply(stream_id, headers, fin):
                return self._with_headers(FrameType.SYN_REPLY, stream_id, headers, fin)
            case Headers(stream_id, headers, fin):
                return self._with_headers(FrameType.HEADERS, stream_id, headers, fin)
            case RstStream(stream_id, status):
                _check_stream_id("RST_STREAM", stream_id)
                return self._fixed(FrameType.RST_STREAM, 0, _TWO_U32.pack(stream_id, status))
            case Settings(settings, clear_settings):
                body = [_U32.pack(len(settings))]
                for s in settings:
                    body.append(_TWO_U32.pack((s.flags << 24) | s.id, s.value))
                flags = FLAG_SETTINGS_CLEAR_SETTINGS if clear_settings else 0
                return self._fixed(FrameType.SETTINGS, flags, b"".join(body))
            case Ping(ping_id):
                return self._fixed(FrameType.PING, 0, _U32.pack(ping_id))
            case GoAway(last_good_stream_id, status):
                _check_stream_id("GOAWAY", last_good_stream_id, zero_ok=True)
                return self._fixed(FrameType.GOAWAY, 0, _TWO_U32.pack(last_good_stream_id, status))
            case WindowUpdate(stream_id, delta):
                _check_stream_id("WINDOW_UPDATE", stream_id, zero_ok=True)
                return self._fixed(FrameType.WINDOW_UPDATE, 0, _TWO_U32.pack(stream_id, delta))
        raise TypeError(f"failed to encode {frame!r}: not a SPDY frame")

    def _fixed(self, frame_type: FrameType, flags: int, body: bytes) -> bytes:
        return encode_control_header(frame_type, flags, len(body)) + body

    def _syn_stream(self, frame: SynStream) -> bytes:
        _check_stream_id("SYN_STREAM", frame.stream_id)
        _check_stream_id("SYN_STREAM", frame.associated_to_stream_id, zero_ok=True)
        if not 0 <= frame.priority <= 7 or not 0 <= frame.slot <= 255:
            raise ValueError(f"failed to encode SYN_STREAM {frame.stream_id}: bad priority/slot")
        block = self._compressor.compress(frame.headers)
        flags = (FLAG_FIN if frame.fin else 0) | (
            FLAG_UNIDIRECTIONAL if frame.unidirectional else 0
        )
        fixed = _SYN_STREAM_FIXED.pack(
            frame.stream_id, frame.associated_to_stream_id, frame.priority << 5, frame.slot
        )
        return self._fixed(FrameType.SYN_STREAM, flags, fixed + block)

    def _with_headers(
        self, frame_type: FrameType, stream_id: int, headers: HeaderBlock, fin: bool
    ) -> bytes:
        _check_stream_id(frame_type.name, stream_id)
        block = self._compressor.compress(headers)
        return self._fixed(frame_type, FLAG_FIN if fin else 0, _U32.pack(stream_id) + block)


class FrameDecoder:
    """Turns received bytes into frames for one direction of one connection.

    A frame's length is checked against the limits as soon as its 8-byte header is in, so a peer
    can never make us buffer more than one frame of the allowed size. Unknown control frame types
    are skipped (draft 3 §2.2.1: "If an endpoint receives a control frame for a type it does not
    recognize, it must ignore the frame"). After a `SpdyProtocolError` the decoder is unusable.
    """

    def __init__(self, limits: SpdyLimits | None = None) -> None:
        self._limits = limits or SpdyLimits()
        self._decompressor = HeaderDecompressor(self._limits.max_header_block_size)
        self._buffer = bytearray()
        self._pos = 0  # frames before this offset are consumed; dropped on the next feed()
        self._failed: SpdyProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buffer) - self._pos

    def feed(self, data: bytes) -> None:
        # One compaction per feed, not one per frame: a read holding many frames is not copied
        # over and over.
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None when more bytes are needed."""
        if self._failed is not None:
            raise SpdyProtocolError(f"connection already failed: {self._failed}")
        try:
            while True:
                start = self._pos + FRAME_HEADER_LENGTH
                if len(self._buffer) < start:
                    return None
                first, flags_length = _TWO_U32.unpack_from(self._buffer, self._pos)
                flags, length = flags_length >> 24, flags_length & MAX_FRAME_LENGTH
                is_control = bool(first & 0x8000_0000)
                self._check_length(first, is_control, length)
                if len(self._buffer) < start + length:
                    return None
                with memoryview(self._buffer) as view:  # one copy, released before a resize
                    body = bytes(view[start : start + length])
                self._pos = start + length
                if not is_control:
                    return self._data(first & MAX_STREAM_ID, flags, body)
                frame = self._control(first & 0xFFFF, flags, body)
                if frame is not None:
                    return frame
        except SpdyProtocolError as e:
            self._failed = e
            raise

    def _check_length(self, first: int, is_control: bool, length: int) -> None:
        if not is_control:
            if length > self._limits.max_data_frame_length:
                raise SpdyProtocolError(
                    f"failed to decode DATA on stream {first & MAX_STREAM_ID}: {length} bytes, "
                    f"limit {self._limits.max_data_frame_length}"
                )
            return
        version = (first >> 16) & 0x7FFF
        if version != VERSION:
            raise SpdyProtocolError(f"failed to decode control frame: SPDY version {version}")
        if length > self._limits.max_control_frame_length:
            raise SpdyProtocolError(
                f"failed to decode control frame type {first & 0xFFFF}: {length} bytes, "
                f"limit {self._limits.max_control_frame_length}"
            )

    def _data(self, stream_id: int, flags: int, body: bytes) -> Data:
        if stream_id == 0:
            raise SpdyProtocolError("failed to decode DATA: stream id 0")
        return Data(stream_id, body, fin=bool(flags & FLAG_FIN))

    def _control(self, frame_type: int, flags: int, body: bytes) -> Frame | None:
        fin = bool(flags & FLAG_FIN)
        if frame_type == FrameType.SYN_STREAM:
            self._need(body, 10, "SYN_STREAM")
            stream_id, associated, priority, slot = _SYN_STREAM_FIXED.unpack_from(body, 0)
            stream_id = self._stream_id(stream_id, "SYN_STREAM")
            headers = self._decompressor.decompress(body[10:])
            return SynStream(
                stream_id,
                headers,
                associated_to_stream_id=associated & MAX_STREAM_ID,
                priority=priority >> 5,
                slot=slot,
                fin=fin,
                unidirectional=bool(flags & FLAG_UNIDIRECTIONAL),
            )
        if frame_type in (FrameType.SYN_REPLY, FrameType.HEADERS):
            name = FrameType(frame_type).name
            self._need(body, 4, name)
            stream_id = self._stream_id(_U32.unpack_from(body, 0)[0], name)
            # Inflate before anything else can fail: the zlib context must see every block.
            headers = self._decompressor.decompress(body[4:])
            if frame_type == FrameType.SYN_REPLY:
                return SynReply(stream_id, headers, fin=fin)
            return Headers(stream_id, headers, fin=fin)
        if frame_type == FrameType.RST_STREAM:
            self._exact(body, 8, "RST_STREAM")
            raw_id, status = _TWO_U32.unpack(body)
            stream_id = self._stream_id(raw_id, "RST_STREAM")
            if status == 0:
                raise SpdyProtocolError(f"failed to decode RST_STREAM {stream_id}: status 0")
            return RstStream(stream_id, status)
        if frame_type == FrameType.SETTINGS:
            return self._settings(flags, body)
        if frame_type == FrameType.PING:
            self._exact(body, 4, "PING")
            return Ping(_U32.unpack(body)[0])
        if frame_type == FrameType.GOAWAY:
            self._exact(body, 8, "GOAWAY")
            last_good, status = _TWO_U32.unpack(body)
            return GoAway(last_good & MAX_STREAM_ID, status)
        if frame_type == FrameType.WINDOW_UPDATE:
            self._exact(body, 8, "WINDOW_UPDATE")
            stream_id, delta = _TWO_U32.unpack(body)
            return WindowUpdate(stream_id & MAX_STREAM_ID, delta & MAX_STREAM_ID)
        return None  # unknown type: ignored, as the spec requires

    def _settings(self, flags: int, body: bytes) -> Settings:
        self._need(body, 4, "SETTINGS")
        (count,) = _U32.unpack_from(body, 0)
        if len(body) != 4 + 8 * count:
            raise SpdyProtocolError(f"failed to decode SETTINGS: {count} entries in {len(body)}")
        settings = []
        for offset in range(4, len(body), 8):
            flags_id, value = _TWO_U32.unpack_from(body, offset)
            settings.append(Setting(flags_id & 0xFF_FFFF, value, flags_id >> 24))
        return Settings(tuple(settings), clear_settings=bool(flags & FLAG_SETTINGS_CLEAR_SETTINGS))

    @staticmethod
    def _need(body: bytes, length: int, name: str) -> None:
        if len(body) < length:
            raise SpdyProtocolError(f"failed to decode {name}: {len(body)} bytes, need {length}")

    @staticmethod
    def _exact(body: bytes, length: int, name: str) -> None:
        if len(body) != length:
            raise SpdyProtocolError(f"failed to decode {name}: {len(body)} bytes, not {length}")

    @staticmethod
    def _stream_id(raw: int, name: str) -> int:
        stream_id = raw & MAX_STREAM_ID
        if stream_id == 0:
            raise SpdyProtocolError(f"failed to decode {name}: stream id 0")
        return stream_id
