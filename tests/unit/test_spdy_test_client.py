"""The streaming tests' own SPDY client (tests/e2e/spdy_client.py) against the shim's sans-IO
framer, on byte strings only: what the client writes, the server side decodes as meant, and
what the server side writes, the client reads back. The e2e tests lean on this client, so a
mistake in it must show here, not as a puzzling failure against a live shim."""

from __future__ import annotations

import json
import struct

import pytest

from shim.streaming.spdy import (
    DataReceived,
    SpdyConnection,
    StreamEnded,
    StreamOpened,
)
from tests.e2e import spdy_client as client


def server_events(data: bytes) -> tuple[SpdyConnection, list[object]]:
    server = SpdyConnection()
    return server, list(server.receive_data(data))


def test_syn_streams_carry_their_headers_through_one_compression_context() -> None:
    compressor = client.HeaderCompressor()
    wire = b"".join(
        client.syn_stream(sid, [("streamtype", kind), ("Port", "80")], compressor, fin=False)
        for sid, kind in ((1, "error"), (3, "data"), (5, "stdin"))
    )
    _, events = server_events(wire)
    opened = [e for e in events if isinstance(e, StreamOpened)]
    assert [(e.stream_id, e.header("streamtype"), e.header("port")) for e in opened] == [
        (1, "error", "80"),
        (3, "data", "80"),
        (5, "stdin", "80"),
    ]


def test_a_syn_stream_with_fin_half_closes_at_once() -> None:
    wire = client.syn_stream(1, [("streamtype", "error")], client.HeaderCompressor(), fin=True)
    _, events = server_events(wire)
    assert [type(e) for e in events] == [StreamOpened, StreamEnded]


@pytest.mark.parametrize("size", [0, 1, 65535, 200_000])
def test_data_frames_and_their_fin(size: int) -> None:
    compressor = client.HeaderCompressor()
    payload = bytes(range(256)) * (size // 256 + 1)
    payload = payload[:size]
    wire = client.syn_stream(1, [("streamtype", "stdin")], compressor, fin=False)
    # What SpdyConnection.send_data does: 24-bit lengths, so big writes become several frames.
    chunks = [payload[i : i + 0xFFFF] for i in range(0, len(payload), 0xFFFF)] or [b""]
    for i, chunk in enumerate(chunks):
        wire += client.data_frame(1, chunk, fin=i == len(chunks) - 1)
    _, events = server_events(wire)
    received = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert received == payload
    assert isinstance(events[-1], StreamEnded)


def test_the_reader_takes_the_servers_frames_in_any_split() -> None:
    compressor = client.HeaderCompressor()
    server, _ = server_events(
        client.syn_stream(1, [("streamtype", "error")], compressor, fin=False)
        + client.syn_stream(3, [("streamtype", "stdout")], compressor, fin=False)
    )
    server.syn_reply(1)
    server.syn_reply(3)
    server.send_data(3, b"hello\n", fin=True)
    status = json.dumps({"status": "Success"}).encode()
    server.send_data(1, status, fin=True)
    server.go_away()
    wire = server.data_to_send()
    reader = client.FrameReader()
    frames = [f for i in range(len(wire)) for f in reader.feed(wire[i : i + 1])]
    kinds = [(f.control, f.kind, f.stream_id, f.fin) for f in frames]
    assert kinds == [
        (True, client.SYN_REPLY, 1, False),
        (True, client.SYN_REPLY, 3, False),
        (False, 0, 3, True),
        (False, 0, 1, True),
        (True, client.GOAWAY, 0, False),
    ]
    data = [f.payload for f in frames if not f.control]
    assert data == [b"hello\n", status]


def test_control_frame_layout() -> None:
    ping = client.ping(7)
    assert ping == struct.pack(">HHI", 0x8003, client.PING, 4) + struct.pack(">I", 7)
    (frame,) = client.FrameReader().feed(client.rst_stream(5))
    assert (frame.control, frame.kind, frame.stream_id) == (True, client.RST_STREAM, 5)
    assert struct.unpack(">I", frame.payload)[0] == client.RST_CANCEL


def test_exec_result_reads_the_v4_status() -> None:
    failure = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "42"}]},
    }
    assert client.ExecResult(b"", b"", failure, "v4.channel.k8s.io").exit_code == 42
    success = client.ExecResult(b"", b"", {"status": "Success"}, "v4.channel.k8s.io")
    assert success.exit_code == 0
    with pytest.raises(ValueError):
        _ = client.ExecResult(b"", b"", {"status": "Failure"}, "v4.channel.k8s.io").exit_code
