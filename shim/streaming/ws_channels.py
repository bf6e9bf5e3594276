"""The channel framing of Kubernetes' WebSocket streaming protocols, sans I/O.

Every message starts with its channel: a byte in the binary protocols (`channel.k8s.io`,
`v4.channel.k8s.io`, `v5.channel.k8s.io`), an ASCII digit followed by base64 text in the
`base64.` ones. Channels of exec/attach: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; of
port-forward: 2i data and 2i+1 error of the i-th port. v5 adds the client's half-close, a
message of two bytes [255, channel] (CRI-CONTAINERS.md §4.2).

wsproto hands a message over in fragments as bytes arrive; `ChannelDecoder` keeps only the
current message's channel and at most three base64 characters between them, so memory stays
bounded however long a message is.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255


class ChannelError(ValueError):
    pass


@dataclass(frozen=True)
class ChannelData:
    """Bytes on a channel; `message_end` on the last piece of a message (its data may then be
    empty: the resize channel parses whole messages)."""

    channel: int
    data: bytes
    message_end: bool = False


@dataclass(frozen=True)
class ChannelClosed:
    """v5: the client will send nothing more on `channel`."""

    channel: int


ChannelEvent = ChannelData | ChannelClosed


def encode(channel: int, data: bytes, base64_text: bool) -> bytes | str:
    """One message for `data` on `channel`: bytes for a binary frame, str for a text one."""
    if base64_text:
        return f"{channel}{base64.b64encode(data).decode()}"
    return bytes((channel,)) + data


class ChannelDecoder:
    def __init__(self, base64_text: bool, close_signal: bool) -> None:
        self._base64 = base64_text
        self._close_signal = close_signal  # v5 only: elsewhere 255 is just a channel
        self._channel: int | None = None
        self._pending = b""  # the start of a message, until its channel is known
        self._b64_rest = ""

    def feed(self, fragment: bytes | str, finished: bool) -> list[ChannelEvent]:
        """Events of one fragment of a message; `finished` on its last fragment."""
        # Kubernetes' own servers take either frame type in every protocol (clients such as
        # the Python one send str data as text): a text fragment is its UTF-8 bytes, a binary
        # one in a base64 protocol its ASCII text.
        if self._base64 and isinstance(fragment, bytes):
            try:
                fragment = fragment.decode("ascii")
            except UnicodeDecodeError as err:
                raise ChannelError(f"a binary message in a base64 protocol: {err}") from err
        elif not self._base64 and isinstance(fragment, str):
            fragment = fragment.encode()
        events: list[ChannelEvent] = []
        if self._base64:
            assert isinstance(fragment, str)
            data = self._feed_text(fragment, finished)
        else:
            assert isinstance(fragment, bytes)
            data = self._feed_binary(fragment, finished)
        if data is not None and self._channel is not None:
            if self._channel == CLOSE_SIGNAL and self._close_signal:
                self._pending += data
                if finished:
                    if len(self._pending) != 1:
                        raise ChannelError("a close signal must name exactly one channel")
                    events.append(ChannelClosed(self._pending[0]))
            elif data or finished:
                events.append(ChannelData(self._channel, data, finished))
        if finished:
            self._channel = None
            self._pending = b""
            self._b64_rest = ""
        return events

    def _feed_binary(self, fragment: bytes, finished: bool) -> bytes | None:
        if self._channel is None:
            if not fragment:
                return None  # an empty message (or fragment): no channel yet, nothing to say
            self._channel = fragment[0]
            return fragment[1:]
        return fragment

    def _feed_text(self, fragment: str, finished: bool) -> bytes | None:
        if self._channel is None:
            if not fragment:
                return None
            if not fragment[0].isdigit():
                raise ChannelError(
                    f"a base64 message must start with a channel digit, not {fragment[0]!r}"
                )
            self._channel = int(fragment[0])
            fragment = fragment[1:]
        text = self._b64_rest + fragment
        cut = len(text) if finished else len(text) - len(text) % 4
        self._b64_rest = text[cut:]
        try:
            return base64.b64decode(text[:cut], validate=True)
        except (binascii.Error, ValueError) as err:
            raise ChannelError(f"bad base64 in a message: {err}") from err
