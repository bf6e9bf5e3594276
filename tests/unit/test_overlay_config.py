"""The network config at <prefix>/config: flannel's defaults, its limits, clear errors."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from overlay.config import BACKEND_HOST_GW, parse_config
from overlay.errors import ConfigError


def _parse(doc: dict[str, Any]) -> Any:
    return parse_config(json.dumps(doc))


def test_defaults_for_a_16() -> None:
    cfg = _parse({"Network": "10.244.0.0/16"})
    assert cfg.network == ipaddress.IPv4Network("10.244.0.0/16")
    assert cfg.subnet_len == 24
    # The first /24 is never handed out.
    assert str(cfg.subnet_min) == "10.244.1.0/24"
    assert str(cfg.subnet_max) == "10.244.255.0/24"
    assert cfg.subnet_count() == 255
    assert cfg.backend.type == "vxlan"
    assert (cfg.backend.vni, cfg.backend.port, cfg.backend.mtu) == (1, 8472, 0)
    assert not cfg.backend.learning and not cfg.backend.direct_routing


def test_keys_ignore_case_like_gos_decoder() -> None:
    cfg = _parse(
        {
            "network": "10.1.0.0/16",
            "SUBNETLEN": 26,
            "subnetMin": "10.1.0.64",
            "backend": {"type": "VXLAN", "vni": 7, "port": 4789, "directrouting": True},
        }
    )
    assert cfg.subnet_len == 26
    assert str(cfg.subnet_min) == "10.1.0.64/26"
    assert (cfg.backend.vni, cfg.backend.port, cfg.backend.direct_routing) == (7, 4789, True)


@pytest.mark.parametrize(
    ("network", "expected_len"),
    [("10.0.0.0/8", 24), ("10.0.0.0/22", 24), ("10.0.0.0/23", 25), ("10.0.0.0/28", 30)],
)
def test_default_subnet_len(network: str, expected_len: int) -> None:
    assert _parse({"Network": network}).subnet_len == expected_len


def test_host_gw_backend() -> None:
    cfg = _parse({"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}})
    assert cfg.backend.type == BACKEND_HOST_GW


def test_allows_only_subnets_in_range_with_the_right_length() -> None:
    cfg = _parse(
        {"Network": "10.244.0.0/16", "SubnetMin": "10.244.10.0", "SubnetMax": "10.244.20.0"}
    )
    assert cfg.allows(ipaddress.IPv4Network("10.244.10.0/24"))
    assert cfg.allows(ipaddress.IPv4Network("10.244.20.0/24"))
    assert not cfg.allows(ipaddress.IPv4Network("10.244.21.0/24"))
    assert not cfg.allows(ipaddress.IPv4Network("10.244.9.0/24"))
    assert not cfg.allows(ipaddress.IPv4Network("10.244.10.0/25"))
    assert cfg.subnet_count() == 11
    assert str(cfg.subnet_at(10)) == "10.244.20.0/24"


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"Network": "10.244.0.0/16", "SubnetLen": 31}, "SubnetLen 31"),
        ({"Network": "10.244.0.0/29"}, "Network 10.244.0.0/29 is too small"),
        (
            {"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.5"},
            "SubnetMin 10.244.1.5 is not aligned",
        ),
        (
            {"Network": "10.244.0.0/16", "SubnetMax": "10.245.1.0"},
            "SubnetMax 10.245.1.0 is not inside",
        ),
        ({"Network": "10.244.0.0/16", "SubnetMin": "bogus"}, "SubnetMin 'bogus' is not an IPv4"),
        (
            {"Network": "10.244.0.0/16", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.8.0"},
            "SubnetMin 10.244.9.0 is above SubnetMax",
        ),
        ({"Network": "10.244.0.0/16", "SubnetLen": 17}, "SubnetLen 17 leaves fewer than four"),
        ({"Network": "10.244.0.0/16", "SubnetLen": "24"}, "SubnetLen must be an integer"),
        ({"SubnetLen": 24}, "Network is missing"),
        ({"Network": "10.244.0.1/16"}, "Network '10.244.0.1/16' is not an IPv4 CIDR"),
        ({"Network": "fd00::/48"}, "is not an IPv4 CIDR"),
        ({"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}, "Backend.Type 'udp'"),
        ({"Network": "10.244.0.0/16", "Backend": {"VNI": 1 << 24}}, "Backend.VNI 16777216"),
        ({"Network": "10.244.0.0/16", "Backend": {"Port": 70000}}, "Backend.Port 70000"),
        (
            {"Network": "10.244.0.0/16", "Backend": {"DirectRouting": "yes"}},
            "Backend.DirectRouting",
        ),
        ({"Network": "10.244.0.0/16", "Backend": "vxlan"}, "Backend must be an object"),
        ({"Network": "10.244.0.0/16", "EnableIPv6": True}, "EnableIPv6"),
        ({"Network": "10.244.0.0/16", "network": "10.1.0.0/16"}, "twice"),
    ],
)
def test_bad_config_names_the_field(doc: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(doc)
    assert needle in str(info.value)


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", '"x"'])
def test_not_a_json_object(raw: str) -> None:
    with pytest.raises(ConfigError, match="invalid network config"):
        parse_config(raw)
