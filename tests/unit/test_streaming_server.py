"""The streaming server's HTTP side on loopback, without Docker: routes, tokens, upgrade
negotiation answers, limits on the request head, and an idempotent close."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from shim.streaming.request_cache import ExecTarget, PortForwardTarget
from shim.streaming.server import MAX_HEAD, StreamingServer

TARGET = ExecTarget("c" * 64, ("true",), tty=False, stdin=False, stdout=True, stderr=False)


@pytest.fixture
def server() -> Iterator[StreamingServer]:
    s = StreamingServer("127.0.0.1:0", client=Any)  # type: ignore[arg-type]
    s.start()
    try:
        yield s
    finally:
        s.close()


def ask(server: StreamingServer, head: bytes) -> bytes:
    """Send a request head, return everything the server answers before it closes."""
    with socket.create_connection(server.address, timeout=15) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def request(path: str, *headers: str, method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def spdy(path: str, *protocols: str) -> bytes:
    offers = [f"X-Stream-Protocol-Version: {p}" for p in protocols]
    return request(path, "Connection: Upgrade", "Upgrade: SPDY/3.1", *offers)


def websocket(path: str, *protocols: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    offers = [f"Sec-WebSocket-Protocol: {', '.join(protocols)}"] if protocols else []
    return request(
        path,
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Key: {key}",
        *offers,
        method="GET",
    )


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def path_of(server: StreamingServer, target: ExecTarget | PortForwardTarget) -> str:
    verb = "exec" if isinstance(target, ExecTarget) else "portforward"
    url = server.url(verb, server.cache.insert(target))
    assert url.startswith(f"http://127.0.0.1:{server.address[1]}/{verb}/")
    return "/" + url.split("/", 3)[3]


def test_unknown_routes_and_tokens_are_404(server: StreamingServer) -> None:
    assert status(ask(server, spdy("/exec/nosuchtoken", "v4.channel.k8s.io"))) == 404
    assert status(ask(server, spdy("/elsewhere", "v4.channel.k8s.io"))) == 404
    path = path_of(server, TARGET)
    # The token of an exec does not open a port-forward.
    other = path.replace("/exec/", "/portforward/")
    assert status(ask(server, spdy(other, "portforward.k8s.io"))) == 404
    assert status(ask(server, spdy(path, "v4.channel.k8s.io"))) == 404  # used just above


def test_spdy_without_a_protocol_header_is_400(server: StreamingServer) -> None:
    answer = ask(server, spdy(path_of(server, TARGET)))
    assert status(answer) == 400 and b"X-Stream-Protocol-Version is required" in answer


def test_spdy_without_a_common_protocol_is_403_with_the_accepted_list(
    server: StreamingServer,
) -> None:
    answer = ask(server, spdy(path_of(server, TARGET), "v9.channel.k8s.io"))
    assert status(answer) == 403
    assert b"X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io" in answer


def test_websocket_with_no_supported_subprotocol_is_400(server: StreamingServer) -> None:
    answer = ask(server, websocket(path_of(server, TARGET), "v9.channel.k8s.io"))
    assert status(answer) == 400 and b"v5.channel.k8s.io" in answer


def test_a_request_without_upgrade_is_400_and_other_methods_405(server: StreamingServer) -> None:
    assert status(ask(server, request(path_of(server, TARGET)))) == 400
    assert status(ask(server, request("/exec/x", method="PUT"))) == 405


@pytest.mark.parametrize(
    "head",
    [
        b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    ],
)
def test_garbage_is_400(server: StreamingServer, head: bytes) -> None:
    assert status(ask(server, head)) == 400


def test_an_oversized_head_is_431(server: StreamingServer) -> None:
    head = request("/exec/x", f"X-Filler: {'a' * (MAX_HEAD + 10)}")
    assert status(ask(server, head)) == 431


def test_close_is_idempotent_and_stops_listening() -> None:
    server = StreamingServer("127.0.0.1:0", client=Any)  # type: ignore[arg-type]
    server.start()
    address = server.address
    with socket.create_connection(address, timeout=5) as idle:
        server.close()
        # Open connections are ended too (reset, if the server never accepted it).
        with contextlib.suppress(ConnectionResetError):
            assert idle.recv(1) == b""
    server.close()
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=2).close()
    assert server.connection_count == 0
