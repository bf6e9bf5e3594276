"""Terminal size messages of the resize stream (SPDY: newline-separated; WebSocket: one per
message, with or without the newline)."""

from __future__ import annotations

import pytest

from shim.streaming.remotecommand import MAX_RESIZE_LINE, ResizeDecoder


def test_newline_separated_in_any_split() -> None:
    decoder = ResizeDecoder()
    assert decoder.feed(b'{"Width":80,"Height":24}\n{"Wid') == [(80, 24)]
    assert decoder.feed(b'th":132,"Height":41}\n') == [(132, 41)]


def test_a_message_end_completes_a_line_without_newline() -> None:
    decoder = ResizeDecoder()
    assert decoder.feed(b'{"Width":100,"Height":30}') == []
    assert decoder.feed(b"", message_end=True) == [(100, 30)]


@pytest.mark.parametrize(
    "line",
    [b"not json\n", b'{"Width":80}\n', b'{"Width":-1,"Height":3}\n', b'{"Width":"x","Height":1}\n'],
)
def test_bad_messages_are_refused(line: bytes) -> None:
    with pytest.raises(ValueError):
        ResizeDecoder().feed(line)


def test_an_endless_line_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        ResizeDecoder().feed(b"{" * (MAX_RESIZE_LINE + 1))
