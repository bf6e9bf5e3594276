"""Routes and protocol negotiation of the streaming server's upgrade handshake."""

from __future__ import annotations

import pytest

from shim.streaming import negotiate
from shim.streaming.negotiate import Route, Transport


@pytest.mark.parametrize(
    ("target", "route"),
    [
        ("/exec/abcDEF-_", Route("exec", "abcDEF-_")),
        ("/attach/x1y2z3w4/", Route("attach", "x1y2z3w4")),
        ("/portforward/tok?port=80&port=443", Route("portforward", "tok")),
        ("/exec/", None),
        ("/exec/a/b", None),
        ("/run/abc", None),
        ("/exec/../../etc", None),
        ("exec/abc", None),
    ],
)
def test_parse_route(target: str, route: Route | None) -> None:
    assert negotiate.parse_route(target) == route


def test_header_values_split_and_join_repeats() -> None:
    headers = [
        ("x-stream-protocol-version", "v5.channel.k8s.io"),
        ("other", "x"),
        ("x-stream-protocol-version", "v4.channel.k8s.io, v3.channel.k8s.io"),
    ]
    assert negotiate.header_values(headers, negotiate.PROTOCOL_HEADER) == [
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
    ]


@pytest.mark.parametrize(
    ("upgrade", "transport"),
    [
        ("SPDY/3.1", Transport.SPDY),
        ("websocket", Transport.WEBSOCKET),
        ("WebSocket", Transport.WEBSOCKET),
        ("h2c", None),
    ],
)
def test_transport_of(upgrade: str, transport: Transport | None) -> None:
    assert negotiate.transport_of([("upgrade", upgrade)]) == transport
    assert negotiate.transport_of([]) is None


@pytest.mark.parametrize(
    ("verb", "offers", "chosen"),
    [
        # client-go offers v5 first; SPDY has no v5: the first known offer wins.
        ("exec", ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io"], negotiate.V4),
        ("attach", ["v2.channel.k8s.io", "v4.channel.k8s.io"], "v2.channel.k8s.io"),
        ("exec", ["channel.k8s.io"], negotiate.V1),
        ("exec", ["v9.channel.k8s.io"], None),
        ("portforward", ["portforward.k8s.io"], negotiate.PORT_FORWARD),
        ("portforward", ["v4.channel.k8s.io"], None),
    ],
)
def test_spdy_negotiation(verb: str, offers: list[str], chosen: str | None) -> None:
    assert negotiate.choose(offers, negotiate.spdy_protocols(verb)) == chosen


@pytest.mark.parametrize(
    ("verb", "offers", "chosen"),
    [
        ("exec", ["v5.channel.k8s.io", "v4.channel.k8s.io"], negotiate.V5),
        ("exec", ["v4.base64.channel.k8s.io"], negotiate.V4_BASE64),
        ("attach", ["base64.channel.k8s.io", "channel.k8s.io"], negotiate.V1_BASE64),
        ("portforward", ["SPDY/3.1+portforward.k8s.io"], negotiate.SPDY_TUNNEL),
        ("portforward", ["v4.channel.k8s.io"], negotiate.V4),
        ("portforward", ["v5.channel.k8s.io"], None),
        ("exec", ["SPDY/3.1+portforward.k8s.io"], None),
    ],
)
def test_websocket_negotiation(verb: str, offers: list[str], chosen: str | None) -> None:
    assert negotiate.choose(offers, negotiate.websocket_protocols(verb)) == chosen


def test_which_protocols_carry_a_status_and_which_base64() -> None:
    assert {p for p in negotiate.WS_REMOTECOMMAND if negotiate.structured_status(p)} == {
        negotiate.V5,
        negotiate.V4,
        negotiate.V4_BASE64,
    }
    assert not negotiate.structured_status("v3.channel.k8s.io")
    assert {p for p in negotiate.WS_REMOTECOMMAND if negotiate.is_base64(p)} == {
        negotiate.V4_BASE64,
        negotiate.V1_BASE64,
    }
