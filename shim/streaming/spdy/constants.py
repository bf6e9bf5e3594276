"""Numbers of the SPDY/3.1 wire format (SPDY draft 3 §2.2, §2.6; draft 3.1 §2.6.8 and §2.6.9)."""

from __future__ import annotations

import enum
from typing import Final

VERSION: Final = 3
"""The only version we speak: SPDY/3 framing, which SPDY/3.1 keeps unchanged."""

FRAME_HEADER_LENGTH: Final = 8
"""Every frame starts with 8 bytes: control bit + version/stream id, type, flags, 24-bit length."""

MAX_STREAM_ID: Final = 0x7FFF_FFFF
"""Stream ids are 31 bits; the top bit of the word is reserved (control bit or unused)."""

MAX_FRAME_LENGTH: Final = 0xFF_FFFF
"""The length field has 24 bits."""

FLAG_FIN: Final = 0x01
"""DATA, SYN_STREAM, SYN_REPLY, HEADERS: the sender half-closes the stream with this frame."""

FLAG_UNIDIRECTIONAL: Final = 0x02
"""SYN_STREAM only: the recipient may not send on the stream (it starts half-closed local)."""

FLAG_SETTINGS_CLEAR_SETTINGS: Final = 0x01
"""SETTINGS only: forget persisted settings."""


class FrameType(enum.IntEnum):
    """Control frame types. 5 (NOOP, SPDY/2) and 10 (CREDENTIAL, SPDY/3) are unknown to us and,
    as the spec requires of unknown types, ignored."""

    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    """RST_STREAM status codes (draft 3 §2.6.3)."""

    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    INVALID_CREDENTIALS = 10
    FRAME_TOO_LARGE = 11


class GoAwayStatus(enum.IntEnum):
    """GOAWAY status codes (draft 3 §2.6.6)."""

    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
