"""Channel framing of the WebSocket streaming protocols, on byte strings."""

from __future__ import annotations

import pytest

from shim.streaming.ws_channels import (
    ChannelClosed,
    ChannelData,
    ChannelDecoder,
    ChannelError,
    encode,
)


@pytest.mark.parametrize(
    ("channel", "data", "base64_text", "message"),
    [
        (1, b"hello", False, b"\x01hello"),
        (3, b"", False, b"\x03"),
        (1, b"hello", True, "1aGVsbG8="),
        (2, b"", True, "2"),
        (0, b"\xff\x00", True, "0/wA="),
    ],
)
def test_encode(channel: int, data: bytes, base64_text: bool, message: bytes | str) -> None:
    assert encode(channel, data, base64_text) == message


def test_binary_message_in_one_piece() -> None:
    decoder = ChannelDecoder(base64_text=False, close_signal=True)
    assert decoder.feed(b"\x00ls\n", True) == [ChannelData(0, b"ls\n", True)]


def test_a_fragmented_message_keeps_its_channel() -> None:
    decoder = ChannelDecoder(base64_text=False, close_signal=True)
    assert decoder.feed(b'\x04{"Width":', False) == [ChannelData(4, b'{"Width":', False)]
    assert decoder.feed(b"80}", False) == [ChannelData(4, b"80}", False)]
    assert decoder.feed(b"", True) == [ChannelData(4, b"", True)]
    # The next message starts with its own channel byte.
    assert decoder.feed(b"\x00x", True) == [ChannelData(0, b"x", True)]


def test_an_empty_message_says_nothing() -> None:
    decoder = ChannelDecoder(base64_text=False, close_signal=False)
    assert decoder.feed(b"", True) == []


def test_v5_close_signal() -> None:
    decoder = ChannelDecoder(base64_text=False, close_signal=True)
    assert decoder.feed(b"\xff\x00", True) == [ChannelClosed(0)]


def test_close_signal_split_across_fragments() -> None:
    decoder = ChannelDecoder(base64_text=False, close_signal=True)
    assert decoder.feed(b"\xff", False) == []
    assert decoder.feed(b"\x00", True) == [ChannelClosed(0)]


def test_a_close_signal_naming_two_channels_is_refused() -> None:
    decoder = ChannelDecoder(base64_text=False, close_signal=True)
    with pytest.raises(ChannelError, match="exactly one channel"):
        decoder.feed(b"\xff\x00\x01", True)


def test_before_v5_255_is_an_ordinary_channel() -> None:
    decoder = ChannelDecoder(base64_text=False, close_signal=False)
    assert decoder.feed(b"\xff\x00", True) == [ChannelData(255, b"\x00", True)]


def test_base64_message() -> None:
    decoder = ChannelDecoder(base64_text=True, close_signal=False)
    assert decoder.feed("0aGVsbG8=", True) == [ChannelData(0, b"hello", True)]


def test_base64_split_inside_a_quantum() -> None:
    decoder = ChannelDecoder(base64_text=True, close_signal=False)
    assert decoder.feed("0aGVsb", False) == [ChannelData(0, b"hel", False)]
    assert decoder.feed("G", False) == []  # "bG" waits for the rest of its quantum
    assert decoder.feed("8=", True) == [ChannelData(0, b"lo", True)]


@pytest.mark.parametrize(
    ("base64_text", "fragment", "error"),
    [
        (True, "x123", "channel digit"),
        (True, "0not base64!", "bad base64"),
        (True, b"\xffbinary", "binary message in a base64"),
    ],
)
def test_malformed_messages_are_refused(
    base64_text: bool, fragment: bytes | str, error: str
) -> None:
    decoder = ChannelDecoder(base64_text=base64_text, close_signal=False)
    with pytest.raises(ChannelError, match=error):
        decoder.feed(fragment, True)


def test_text_frames_in_a_binary_protocol_are_their_utf8_bytes() -> None:
    # The Python kubernetes client sends str data as text messages: chr(channel) + data.
    decoder = ChannelDecoder(base64_text=False, close_signal=True)
    assert decoder.feed("\x00h\u00e9", True) == [ChannelData(0, "hé".encode(), True)]
    assert decoder.feed('\x04{"Width":1,"Height":2}', True) == [
        ChannelData(4, b'{"Width":1,"Height":2}', True)
    ]


def test_binary_frames_in_a_base64_protocol_are_their_text() -> None:
    decoder = ChannelDecoder(base64_text=True, close_signal=False)
    assert decoder.feed(b"0aGk=", True) == [ChannelData(0, b"hi", True)]
