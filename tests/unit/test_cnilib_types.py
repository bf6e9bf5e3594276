"""Result parsing and conversion between the 0.3.x, 0.4.0 and 1.x shapes."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from cnilib.errors import DecodeError, VersionError
from cnilib.types import Result

V040 = {
    "cniVersion": "0.4.0",
    "interfaces": [
        {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
        {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/var/run/netns/x"},
    ],
    "ips": [
        {"version": "4", "interface": 1, "address": "10.201.0.5/24", "gateway": "10.201.0.1"},
        {"version": "6", "interface": 1, "address": "fd01:201::5/64"},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.201.0.1"}, {"dst": "::/0"}],
    "dns": {
        "nameservers": ["10.201.0.53"],
        "domain": "cluster.local",
        "search": ["a", "b"],
        "options": ["ndots:5"],
    },
}

V100 = {
    **V040,
    "cniVersion": "1.0.0",
    "ips": [
        {"interface": 1, "address": "10.201.0.5/24", "gateway": "10.201.0.1"},
        {"interface": 1, "address": "fd01:201::5/64"},
    ],
}

V110 = {
    **V100,
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
        {
            "name": "eth0",
            "mac": "aa:bb:cc:dd:ee:02",
            "mtu": 1400,
            "sandbox": "/var/run/netns/x",
            "socketPath": "/run/s.sock",
            "pciID": "0000:00:01.0",
        },
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0",
            "gw": "10.201.0.1",
            "mtu": 1400,
            "advmss": 1360,
            "priority": 5,
            "table": 100,
            "scope": 0,
        },
        {"dst": "::/0"},
    ],
}

# 1.1.0 -> older: the 1.1-only fields are dropped.
V110_AS_100 = {**V100}


def as_version(obj: dict[str, Any], version: str) -> dict[str, Any]:
    return {**obj, "cniVersion": version}


CONVERSIONS = [
    ("0.4.0->0.4.0", V040, "0.4.0", V040),
    ("0.4.0->0.3.1", V040, "0.3.1", as_version(V040, "0.3.1")),
    ("0.4.0->0.3.0", V040, "0.3.0", as_version(V040, "0.3.0")),
    ("0.3.1->0.4.0", as_version(V040, "0.3.1"), "0.4.0", V040),
    ("0.4.0->1.0.0 drops ip version", V040, "1.0.0", V100),
    ("1.0.0->0.4.0 adds ip version", V100, "0.4.0", V040),
    ("1.0.0->0.3.1", V100, "0.3.1", as_version(V040, "0.3.1")),
    ("1.1.0->1.1.0 keeps extras", V110, "1.1.0", V110),
    ("1.1.0->1.0.0 drops extras", V110, "1.0.0", V110_AS_100),
    ("1.1.0->0.4.0", V110, "0.4.0", V040),
    ("1.0.0->1.1.0", V100, "1.1.0", as_version(V100, "1.1.0")),
]


@pytest.mark.parametrize(
    ("case", "source", "version", "expected"), CONVERSIONS, ids=[c[0] for c in CONVERSIONS]
)
def test_conversion(
    case: str, source: dict[str, Any], version: str, expected: dict[str, Any]
) -> None:
    result = Result.from_json(json.dumps(source).encode())
    assert result.to_dict(version) == expected
    assert json.loads(result.to_json(version)) == expected


def test_typed_view() -> None:
    result = Result.from_json(V040)
    assert result.cni_version == "0.4.0"
    assert [i.name for i in result.interfaces] == ["cni0", "eth0"]
    assert result.interfaces[1].sandbox == "/var/run/netns/x"
    assert result.ips[0].address == ipaddress.ip_interface("10.201.0.5/24")
    assert result.ips[0].gateway == ipaddress.ip_address("10.201.0.1")
    assert result.ips[0].interface == 1
    assert result.ips[1].gateway is None
    assert result.routes[0].dst == ipaddress.ip_network("0.0.0.0/0")
    assert result.dns.nameservers == ["10.201.0.53"]


def test_own_version_is_the_default_and_dns_always_present() -> None:
    minimal = {"cniVersion": "1.0.0"}
    assert Result.from_json(minimal).to_dict() == {"cniVersion": "1.0.0", "dns": {}}
    assert Result.from_json('{"cniVersion": "0.3.1", "ips": []}').to_dict()["cniVersion"] == (
        "0.3.1"
    )


@pytest.mark.parametrize(
    ("data", "error", "quoted"),
    [
        (b"not json at all", DecodeError, "not json at all"),
        (b"[1]", DecodeError, "[1]"),
        (
            b'{"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.300/24"}]}',
            DecodeError,
            "10.0.0.300",
        ),
        (b'{"cniVersion": "1.0.0", "ips": "x"}', DecodeError, "'ips' must be a list"),
        (b'{"cniVersion": "1.0.0", "interfaces": [{"name": 3}]}', DecodeError, "'name'"),
        (b'{"cniVersion": "0.2.0", "ip4": {}}', VersionError, "0.2.0"),
        (b'{"ips": []}', VersionError, "None"),
    ],
)
def test_bad_results_are_rejected_quoting_them(
    data: bytes, error: type[Exception], quoted: str
) -> None:
    with pytest.raises(error) as info:
        Result.from_json(data)
    assert quoted in str(info.value)


def test_conversion_to_unknown_version_fails() -> None:
    with pytest.raises(VersionError):
        Result.from_json(V100).to_dict("0.2.0")
