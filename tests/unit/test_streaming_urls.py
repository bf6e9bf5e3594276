"""--streaming-bind-addr and the absolute URLs the streaming RPCs hand out."""

from __future__ import annotations

import pytest

from shim.streaming.urls import BindAddressError, advertised_host, base_url, parse_bind_addr


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("0.0.0.0:10010", ("0.0.0.0", 10010)),
        (":10010", ("", 10010)),
        ("[::1]:8080", ("::1", 8080)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_bind_addr(value: str, parsed: tuple[str, int]) -> None:
    assert parse_bind_addr(value) == parsed


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("10010", "not host:port"),
        ("127.0.0.1:http", "not a number"),
        ("127.0.0.1:70000", "out of range"),
        ("example.com:80", "IP address"),
    ],
)
def test_bad_bind_addr(value: str, error: str) -> None:
    with pytest.raises(BindAddressError, match=error):
        parse_bind_addr(value)


def test_a_concrete_host_is_advertised_as_bound() -> None:
    assert advertised_host("127.0.0.1") == "127.0.0.1"
    assert advertised_host("10.1.2.3") == "10.1.2.3"
    assert advertised_host("localhost") == "127.0.0.1"


def test_a_wildcard_advertises_a_reachable_address_of_the_host() -> None:
    addresses = lambda: ["127.0.1.1", "fe80::1", "192.168.7.9", "2001:db8::5"]  # noqa: E731
    assert advertised_host("0.0.0.0", addresses) == "192.168.7.9"
    assert advertised_host("", addresses) == "192.168.7.9"
    assert advertised_host("::", addresses) == "2001:db8::5"


def test_a_wildcard_falls_back_to_loopback() -> None:
    assert advertised_host("0.0.0.0", lambda: ["127.0.0.1"]) == "127.0.0.1"
    assert advertised_host("::", lambda: []) == "::1"


def test_urls_are_absolute_http() -> None:
    assert base_url("127.0.0.1", 4567) == "http://127.0.0.1:4567/"
    assert base_url("::1", 4567) == "http://[::1]:4567/"
