"""Docker's multiplexed stream format, fed in every split."""

from __future__ import annotations

import pytest

from shim.engine.stdcopy import DemuxError, Stream, StreamDemuxer, frame


def test_frames_in_one_chunk() -> None:
    data = frame(Stream.STDOUT, b"out\n") + frame(Stream.STDERR, b"err") + frame(Stream.STDOUT, b"")
    assert StreamDemuxer().feed(data) == [
        (Stream.STDOUT, b"out\n"),
        (Stream.STDERR, b"err"),
        (Stream.STDOUT, b""),
    ]


def test_byte_by_byte() -> None:
    data = frame(Stream.STDERR, b"x" * 300) + frame(Stream.STDOUT, b"y")
    demux = StreamDemuxer()
    got = [f for i in range(len(data)) for f in demux.feed(data[i : i + 1])]
    assert got == [(Stream.STDERR, b"x" * 300), (Stream.STDOUT, b"y")]
    assert demux.pending == 0


def test_cut_stream_is_pending() -> None:
    demux = StreamDemuxer()
    assert demux.feed(frame(Stream.STDOUT, b"abcdef")[:10]) == []
    assert demux.pending == 10


def test_unknown_stream_id() -> None:
    with pytest.raises(DemuxError, match="unknown stream id 7"):
        StreamDemuxer().feed(b"\x07\x00\x00\x00\x00\x00\x00\x01a")
