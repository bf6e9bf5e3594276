"""The SPDY framer's exception hierarchy.

`SpdyProtocolError` means the peer broke the protocol (or one of our limits): the connection is
unusable, the caller sends GOAWAY (`SpdyConnection.go_away(error.goaway_status)`) and closes the
socket. `StreamClosedError` is the ordinary race of writing to a stream the peer has just reset or
finished; the caller drops what it wanted to write. `SpdyUsageError` is a bug in the caller.
"""

from __future__ import annotations

from shim.streaming.spdy.constants import GoAwayStatus


class SpdyError(Exception):
    """Base of every error this package raises on purpose."""


class SpdyProtocolError(SpdyError):
    """The peer sent bytes that are not valid SPDY/3.1 or exceed a configured limit."""

    def __init__(self, message: str, goaway_status: GoAwayStatus = GoAwayStatus.PROTOCOL_ERROR):
        super().__init__(message)
        self.goaway_status = goaway_status


class StreamClosedError(SpdyError):
    """The stream is not open for sending (reset, finished by us, or never known)."""

    def __init__(self, message: str, stream_id: int):
        super().__init__(message)
        self.stream_id = stream_id


class SpdyUsageError(SpdyError):
    """The caller asked for something the protocol forbids (a second SYN_REPLY, DATA before it)."""
