"""Which URL was asked for and which streaming protocol both sides speak: pure functions over
the request line and headers, so the handshake rules are tested without a socket.

Rules (CRI-CONTAINERS.md §4.2): SPDY offers come as `X-Stream-Protocol-Version` headers, one
or more, each possibly comma-separated; the server picks the first *client* offer it knows.
WebSocket offers come in `Sec-WebSocket-Protocol` and follow the same rule; no offer at all
means the original binary channel protocol.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V1 = "channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"
PORT_FORWARD = "portforward.k8s.io"
# client-go's port-forward over WebSocket: SPDY frames inside binary messages.
SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"

SPDY_REMOTECOMMAND = (V4, "v3.channel.k8s.io", "v2.channel.k8s.io", V1)
SPDY_PORT_FORWARD = (PORT_FORWARD,)
WS_REMOTECOMMAND = (V5, V4, V4_BASE64, V1, V1_BASE64)
WS_PORT_FORWARD = (SPDY_TUNNEL, V4, V4_BASE64, V1, V1_BASE64)

PROTOCOL_HEADER = "x-stream-protocol-version"
ACCEPTED_HEADER = "X-Accepted-Stream-Protocol-Versions"

VERBS = ("exec", "attach", "portforward")
_ROUTE = re.compile(r"^/(exec|attach|portforward)/([A-Za-z0-9_-]{1,64})/?$")


class Transport(enum.Enum):
    SPDY = "spdy"
    WEBSOCKET = "websocket"


@dataclass(frozen=True)
class Route:
    verb: str
    token: str


def parse_route(target: str) -> Route | None:
    """`/exec/<token>` and its siblings; the query (kubelet's `?port=`) is not ours to read:
    the request the token stands for already holds everything."""
    path = target.split("?", 1)[0]
    match = _ROUTE.match(path)
    return None if match is None else Route(match.group(1), match.group(2))


def header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of header `name` (lower-case), comma-separated lists split."""
    values: list[str] = []
    for key, value in headers:
        if key == name:
            values.extend(v.strip() for v in value.split(",") if v.strip())
    return values


def transport_of(headers: Iterable[tuple[str, str]]) -> Transport | None:
    offers = [v.lower() for v in header_values(headers, "upgrade")]
    if "spdy/3.1" in offers:
        return Transport.SPDY
    if "websocket" in offers:
        return Transport.WEBSOCKET
    return None


def choose(client: Sequence[str], server: Sequence[str]) -> str | None:
    """The first of the client's offers that the server speaks."""
    for offer in client:
        if offer in server:
            return offer
    return None


def spdy_protocols(verb: str) -> tuple[str, ...]:
    return SPDY_PORT_FORWARD if verb == "portforward" else SPDY_REMOTECOMMAND


def websocket_protocols(verb: str) -> tuple[str, ...]:
    return WS_PORT_FORWARD if verb == "portforward" else WS_REMOTECOMMAND


def is_base64(protocol: str) -> bool:
    return protocol in (V4_BASE64, V1_BASE64)


def structured_status(protocol: str) -> bool:
    """Whether the error stream carries a metav1.Status (v4 and later) or plain text."""
    return protocol in (V4, V5, V4_BASE64)
