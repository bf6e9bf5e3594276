"""Framing shared by the warm worker and its client: 4-byte big-endian length + JSON."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

_HEADER = struct.Struct(">I")
MAX_MESSAGE = 64 * 1024 * 1024


class WireError(Exception):
    """The peer closed the connection or sent something unframed."""


def send_message(sock: socket.socket, obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise WireError("connection closed mid-message")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket) -> dict[str, Any]:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if size > MAX_MESSAGE:
        raise WireError(f"message of {size} bytes is too large")
    try:
        obj = json.loads(_recv_exact(sock, size))
    except ValueError as exc:
        raise WireError(f"undecodable message: {exc}") from exc
    if not isinstance(obj, dict):
        raise WireError("message is not a JSON object")
    return obj
