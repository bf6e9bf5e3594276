"""Bounds on what a peer may make us buffer, decompress or track. Every one of them is checked
before the memory is spent (a frame's length before its payload is buffered, a header block's
size while it is being inflated), and exceeding one is a `SpdyProtocolError`."""

from __future__ import annotations

import dataclasses

from shim.streaming.spdy.constants import MAX_FRAME_LENGTH


@dataclasses.dataclass(frozen=True, slots=True)
class SpdyLimits:
    max_data_frame_length: int = 1 << 20
    """Largest DATA payload accepted. spdystream writes one frame per Write() call, and
    client-go's copy loops write at most 32 KiB at a time, so 1 MiB leaves a wide margin."""

    max_control_frame_length: int = 64 << 10
    """Largest control frame payload accepted; for SYN_STREAM/SYN_REPLY/HEADERS this bounds the
    compressed header block."""

    max_header_block_size: int = 256 << 10
    """Largest header block after inflating; a zlib bomb stops here, not in memory."""

    max_concurrent_streams: int = 100
    """Peer-initiated streams open at once; SYN_STREAMs beyond it are refused (RST_STREAM
    REFUSED_STREAM, draft 3 §2.6.4 SETTINGS_MAX_CONCURRENT_STREAMS semantics) and the session
    goes on. An exec uses 5 streams, a port-forward 2 per forwarded connection."""

    max_send_data_length: int = 64 << 10
    """`SpdyConnection.send_data` splits larger writes into DATA frames of at most this size."""

    reset_memory: int = 1024
    """How many stream ids we reset are remembered, so frames the peer had already in flight for
    them are dropped quietly instead of each drawing another RST_STREAM."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SpdyLimits.{field.name} must be a positive int, not {value!r}")
        for name in ("max_data_frame_length", "max_control_frame_length", "max_send_data_length"):
            if getattr(self, name) > MAX_FRAME_LENGTH:
                raise ValueError(f"SpdyLimits.{name} exceeds the 24-bit frame length field")
