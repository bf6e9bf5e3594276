"""Configuration parsing of bridge, ptp, tuning and bandwidth (pure, no netns)."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

import pytest

from netplugins import bandwidth, bridge, errors, ipconfig, nsenter, portmap, ptp, tuning


def test_bridge_defaults_like_reference() -> None:
    conf = bridge.load_conf({"name": "n"})
    assert (conf.bridge, conf.is_gateway, conf.ip_masq, conf.mtu, conf.ipam_type) == (
        "cni0",
        False,
        False,
        0,
        "",
    )


def test_bridge_default_gateway_implies_gateway() -> None:
    assert bridge.load_conf({"name": "n", "isDefaultGateway": True}).is_gateway


@pytest.mark.parametrize(
    "netconf",
    [
        {"name": "n", "hairpinMode": True, "promiscMode": True},
        {"name": "n", "vlan": 5000},
        {"name": "n", "bridge": "a-very-long-bridge-name"},
        {"name": "n", "isGateway": "yes"},
        {"bridge": "x"},
    ],
)
def test_bridge_rejects(netconf: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigError):
        bridge.load_conf(netconf)


def test_bridge_default_routes_per_family() -> None:
    result: dict[str, Any] = {
        "ips": [
            {"address": "10.202.1.2/24", "gateway": "10.202.1.1"},
            {"address": "fd02:202::2/64", "gateway": "fd02:202::1"},
        ],
        "routes": [{"dst": "10.203.0.0/16"}],
    }
    bridge._add_default_routes(result)
    assert result["routes"] == [
        {"dst": "10.203.0.0/16"},
        {"dst": "0.0.0.0/0", "gw": "10.202.1.1"},
        {"dst": "::/0", "gw": "fd02:202::1"},
    ]


def test_bridge_default_route_conflict() -> None:
    result: dict[str, Any] = {
        "ips": [{"address": "10.202.1.2/24", "gateway": "10.202.1.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.202.1.254"}],
    }
    with pytest.raises(errors.ConfigError, match="isDefaultGateway ineffective"):
        bridge._add_default_routes(result)


def test_ptp_requires_ipam() -> None:
    with pytest.raises(errors.ConfigError):
        ptp.load_conf({"name": "n"})
    assert ptp.load_conf({"name": "n", "ipam": {"type": "host-local"}, "mtu": 1400}).mtu == 1400


@pytest.mark.parametrize("key", ["kernel.panic", "netfilter_x.y", "vm.swappiness"])
def test_tuning_refuses_sysctls_outside_net(key: str) -> None:
    with pytest.raises(errors.ConfigError, match="invalid net sysctl key"):
        tuning.load_conf({"sysctl": {key: "1"}})


def test_tuning_mac_capability_wins_and_is_validated() -> None:
    conf = tuning.load_conf(
        {"mac": "02:00:00:00:00:01", "runtimeConfig": {"mac": "02:00:00:00:00:AA"}}
    )
    assert conf.mac == "02:00:00:00:00:aa"
    with pytest.raises(errors.ConfigError):
        tuning.load_conf({"mac": "not-a-mac"})


def test_bandwidth_capability_overrides_static_values() -> None:
    conf = bandwidth.load_conf(
        {
            "name": "n",
            "ingressRate": 1,
            "ingressBurst": 1,
            "runtimeConfig": {"bandwidth": {"egressRate": 800, "egressBurst": 80}},
        }
    )
    assert (conf.ingress_rate, conf.egress_rate, conf.egress_burst) == (0, 800, 80)


def test_bandwidth_ifb_name_matches_reference_hash() -> None:
    name = bandwidth.ifb_name("net", "cid")
    assert name == "bwp" + hashlib.sha512(b"netcid").hexdigest()[:12]
    assert len(name) == 15


@pytest.mark.parametrize(
    ("conf_dns", "kept"),
    [
        ({}, True),
        ({"domain": ""}, True),
        ({"nameservers": None}, True),
        ({"nameservers": []}, False),  # a present list is "set", as Go's non-nil slice
        ({"domain": "conf.example"}, False),
        ({"search": ["conf.example"]}, False),
    ],
)
def test_config_dns_replaces_ipam_dns_only_when_set(conf_dns: dict[str, Any], kept: bool) -> None:
    ipam_dns = {"nameservers": ["10.202.0.53"]}
    result: dict[str, Any] = {"dns": dict(ipam_dns)}
    ipconfig.apply_config_dns(result, conf_dns)
    assert result["dns"] == (ipam_dns if kept else conf_dns)


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"),
        ("net/ipv6/conf/eth0.100/accept_dad", "/proc/sys/net/ipv6/conf/eth0.100/accept_dad"),
        ("net/ipv4/conf/br.100/route_localnet", "/proc/sys/net/ipv4/conf/br.100/route_localnet"),
    ],
)
def test_sysctl_path_keeps_dots_of_slash_spelled_names(name: str, path: str) -> None:
    assert nsenter.sysctl_path(name) == path


def test_interface_sysctl_keeps_the_interface_name_whole() -> None:
    name = nsenter.iface_sysctl("ipv6", "eth0.100", "accept_dad")
    assert nsenter.sysctl_path(name) == "/proc/sys/net/ipv6/conf/eth0.100/accept_dad"


def test_portmap_route_localnet_on_a_device_with_a_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[tuple[str, str]] = []
    monkeypatch.setattr("netplugins.ifreq.ipv4_route_device", lambda ip: "br.100")
    monkeypatch.setattr(
        "netplugins.nsenter.write_sysctl", lambda name, value: written.append((name, value))
    )
    portmap._route_localnet(ipaddress.IPv4Interface("10.202.0.5/24"))
    assert [(nsenter.sysctl_path(n), v) for n, v in written] == [
        ("/proc/sys/net/ipv4/conf/br.100/route_localnet", "1")
    ]


def test_tuning_sysctl_keys_may_not_leave_net() -> None:
    for key in ("net/../kernel/hostname", "net.ipv4.conf.eth0/../../../kernel/x"):
        with pytest.raises(errors.ConfigError):
            tuning.load_conf({"sysctl": {key: "1"}})
    conf = tuning.load_conf({"sysctl": {"net/ipv4/conf/eth0.100/rp_filter": "1"}})
    assert conf.sysctl == {"net/ipv4/conf/eth0.100/rp_filter": "1"}
