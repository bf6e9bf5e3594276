"""ExecSync's output handling without Docker: the cap, and the stream reader on a socketpair."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from shim.engine.docker_exec import CappedBuffer, read_streams
from shim.engine.stdcopy import Stream, frame


@pytest.mark.parametrize(
    ("writes", "limit", "kept", "dropped"),
    [
        ([b"abc"], 10, b"abc", 0),
        ([b"abc", b"defgh"], 5, b"abcde", 3),
        ([b"abcde", b"fg"], 5, b"abcde", 2),  # full: later writes are dropped whole
        ([b"", b"x"], 1, b"x", 0),
        ([b"xyz"], 0, b"", 3),
    ],
)
def test_capped_buffer(writes: list[bytes], limit: int, kept: bytes, dropped: int) -> None:
    buffer = CappedBuffer(limit)
    for data in writes:
        buffer.write(data)
    assert buffer.getvalue() == kept
    assert buffer.dropped == dropped


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, docker_side = socket.socketpair()
    yield ours, docker_side
    ours.close()
    docker_side.close()


def test_streams_are_separated_until_eof(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, docker_side = pair
    data = (
        frame(Stream.STDOUT, b"out1 ")
        + frame(Stream.STDERR, b"err")
        + frame(Stream.STDOUT, b"out2")
    )
    docker_side.sendall(data)
    docker_side.shutdown(socket.SHUT_WR)
    out, err = CappedBuffer(), CappedBuffer()
    assert read_streams(ours, time.monotonic() + 5, out, err) is True
    assert (out.getvalue(), err.getvalue()) == (b"out1 out2", b"err")


def test_output_over_the_cap_is_drained_and_dropped(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, docker_side = pair

    def produce() -> None:
        for _ in range(64):
            docker_side.sendall(frame(Stream.STDOUT, b"y" * 4096))
        docker_side.sendall(frame(Stream.STDERR, b"tail"))
        docker_side.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=produce)
    writer.start()
    out, err = CappedBuffer(10_000), CappedBuffer(10_000)
    try:
        assert read_streams(ours, time.monotonic() + 10, out, err) is True
    finally:
        writer.join(10)
    assert out.getvalue() == b"y" * 10_000
    assert out.dropped == 64 * 4096 - 10_000
    assert err.getvalue() == b"tail"


def test_deadline_ends_the_wait(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, docker_side = pair
    docker_side.sendall(frame(Stream.STDOUT, b"partial"))
    out, err = CappedBuffer(), CappedBuffer()
    started = time.monotonic()
    assert read_streams(ours, started + 0.2, out, err) is False
    assert 0.2 <= time.monotonic() - started < 1.0
    assert out.getvalue() == b"partial"


def test_frames_buffered_by_the_http_reader_come_first(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """docker-py's SocketIO keeps the HTTP response; its reader may already hold frames."""
    ours, docker_side = pair
    reader = ours.makefile("rb")
    docker_side.sendall(b"X" + frame(Stream.STDOUT, b"early"))
    assert reader.read(1) == b"X"  # the reader has now buffered the frame behind the header
    sock_io = SimpleNamespace(
        _sock=ours, _response=SimpleNamespace(raw=SimpleNamespace(_fp=SimpleNamespace(fp=reader)))
    )
    docker_side.sendall(frame(Stream.STDOUT, b" late"))
    docker_side.shutdown(socket.SHUT_WR)
    out, err = CappedBuffer(), CappedBuffer()
    try:
        assert read_streams(sock_io, time.monotonic() + 5, out, err) is True
    finally:
        reader.close()
    assert out.getvalue() == b"early late"
