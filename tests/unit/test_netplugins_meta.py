"""flannel delegate construction and portmap rule generation (pure functions)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from cnilib.conf import parse_conf_list
from netplugins import errors, flannel, portmap

SEED_CONFLIST_FLANNEL = {
    "type": "flannel",
    "delegate": {"hairpinMode": True, "isDefaultGateway": True},
}


def _env(tmp_path: Path, text: str) -> flannel.SubnetEnv:
    path = tmp_path / "subnet.env"
    path.write_text(text)
    return flannel.read_subnet_env(str(path))


def test_flannel_delegate_defaults_like_reference(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        "FLANNEL_NETWORK=10.203.0.0/16\nFLANNEL_SUBNET=10.203.7.1/24\n"
        "FLANNEL_MTU=1410\nFLANNEL_IPMASQ=true\n",
    )
    netconf = {"cniVersion": "0.3.1", "name": "cbr0", **SEED_CONFLIST_FLANNEL}
    assert flannel.build_delegate(netconf, env) == {
        "cniVersion": "0.3.1",
        "name": "cbr0",
        "type": "bridge",
        "hairpinMode": True,
        "isDefaultGateway": True,
        "isGateway": True,
        "ipMasq": False,  # flanneld masquerades, so the bridge must not
        "mtu": 1410,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.203.7.0/24"}]],
            "routes": [{"dst": "10.203.0.0/16"}],
        },
    }


def test_flannel_delegate_keeps_explicit_values_and_dual_stack(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        "FLANNEL_NETWORK=10.203.0.0/16\nFLANNEL_SUBNET=10.203.7.1/24\n"
        "FLANNEL_IPV6_NETWORK=fd02:202::/64\nFLANNEL_IPV6_SUBNET=fd02:202::/80\n"
        "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    )
    netconf = {
        "name": "n",
        "type": "flannel",
        "delegate": {"mtu": 1300, "ipMasq": False, "bridge": "nptf9"},
    }
    delegate = flannel.build_delegate(netconf, env)
    assert (delegate["mtu"], delegate["ipMasq"], delegate["bridge"]) == (1300, False, "nptf9")
    assert delegate["ipam"]["ranges"] == [
        [{"subnet": "10.203.7.0/24"}],
        [{"subnet": "fd02:202::/80"}],
    ]
    assert delegate["ipam"]["routes"] == [{"dst": "10.203.0.0/16"}, {"dst": "fd02:202::/64"}]


@pytest.mark.parametrize(
    "text",
    [
        "FLANNEL_NETWORK=10.203.0.0/16\n",
        "FLANNEL_SUBNET=nonsense\nFLANNEL_MTU=1\nFLANNEL_IPMASQ=true",
    ],
)
def test_flannel_bad_subnet_env(tmp_path: Path, text: str) -> None:
    with pytest.raises(errors.ConfigError):
        _env(tmp_path, text)


def test_flannel_missing_subnet_env_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(errors.NetPluginError, match=r"subnet\.env"):
        flannel.read_subnet_env(str(tmp_path / "subnet.env"))


def _pm_conf(mappings: list[dict[str, Any]], **extra: Any) -> portmap.PortMapConf:
    return portmap.load_conf({"name": "pm", "runtimeConfig": {"portMappings": mappings}, **extra})


def test_portmap_rules_per_mapping() -> None:
    conf = _pm_conf(
        [
            {"hostPort": 32001, "containerPort": 80, "protocol": "TCP"},
            {"hostPort": 32002, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
        ]
    )
    addr = ipaddress.ip_interface("10.202.3.4/24")
    # One rule a string, split into its arguments (none of them contains a space).
    expected = [
        "-p tcp --dport 32001 -s 10.202.3.0/24 -j CNI-HOSTPORT-SETMARK",
        "-p tcp --dport 32001 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK",
        "-p tcp --dport 32001 -j DNAT --to-destination 10.202.3.4:80",
        "-p udp --dport 32002 -d 127.0.0.1 -s 10.202.3.0/24 -j CNI-HOSTPORT-SETMARK",
        "-p udp --dport 32002 -d 127.0.0.1 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK",
        "-p udp --dport 32002 -d 127.0.0.1 -j DNAT --to-destination 10.202.3.4:53",
    ]
    assert portmap._dnat_rules(conf, addr, portmap.SETMARK) == [rule.split() for rule in expected]


def test_portmap_ipv6_has_no_localhost_rule_and_skips_v4_host_ips() -> None:
    conf = _pm_conf(
        [
            {"hostPort": 32003, "containerPort": 80},
            {"hostPort": 32004, "containerPort": 80, "hostIP": "10.0.0.1"},
        ],
        snat=True,
    )
    rules = portmap._dnat_rules(conf, ipaddress.ip_interface("fd02:202::5/64"), portmap.SETMARK)
    assert rules == [
        ["-p", "tcp", "--dport", "32003", "-s", "fd02:202::/64", "-j", "CNI-HOSTPORT-SETMARK"],
        ["-p", "tcp", "--dport", "32003", "-j", "DNAT", "--to-destination", "[fd02:202::5]:80"],
    ]


def test_portmap_entry_rules_group_by_protocol_in_chunks_of_15() -> None:
    conf = _pm_conf(
        [{"hostPort": 32000 + i, "containerPort": 80} for i in range(17)]
        + [{"hostPort": 32050, "containerPort": 53, "protocol": "udp"}]
    )
    rules = portmap._entry_rules(conf, "cid")
    ports = [r[r.index("--destination-ports") + 1] for r in rules]
    protos = [r[r.index("-p") + 1] for r in rules]
    assert protos == ["tcp", "tcp", "udp"]
    assert ports[0].count(",") == 14 and ports[1] == "32015,32016" and ports[2] == "32050"
    assert 'dnat name: "pm" id: "cid"' in rules[0]


@pytest.mark.parametrize(
    "bad",
    [
        {"hostPort": 0, "containerPort": 80},
        {"hostPort": 70000, "containerPort": 80},
        {"containerPort": 80},
    ],
)
def test_portmap_bad_mappings(bad: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigError):
        _pm_conf([bad])


def test_container_ips_only_from_the_sandbox_interface() -> None:
    result = {
        "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [
            {"address": "10.202.3.1/24", "interface": 0},
            {"address": "10.202.3.4/24", "interface": 1},
            {"address": "fd02:202::4/64", "interface": 1},
        ],
    }
    assert [str(a) for a in portmap._container_ips(result, "eth0")] == [
        "10.202.3.4/24",
        "fd02:202::4/64",
    ]


SEED_10_FLANNEL_CONFLIST = b"""{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}"""


def test_seed_conflist_as_written_uses_the_reference_defaults() -> None:
    net = parse_conf_list(SEED_10_FLANNEL_CONFLIST)
    assert [p.type for p in net.plugins] == ["flannel", "portmap"]
    flannel_conf = dict(net.plugins[0].raw, name=net.name, cniVersion=net.cni_version)
    subnet_file, data_dir, saved = flannel._conf_paths(flannel_conf, "abc")
    assert (subnet_file, data_dir, saved) == (
        "/run/flannel/subnet.env",
        "/var/lib/cni/flannel",
        "/var/lib/cni/flannel/abc",
    )
    env = flannel.SubnetEnv(network="10.244.0.0/16", subnet="10.244.1.0/24", mtu=1410, ipmasq=True)
    delegate = flannel.build_delegate(flannel_conf, env)
    assert json.loads(json.dumps(delegate)) == {
        "name": "cbr0",
        "cniVersion": "0.3.1",
        "type": "bridge",
        "hairpinMode": True,
        "isDefaultGateway": True,
        "isGateway": True,
        "ipMasq": False,
        "mtu": 1410,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.244.1.0/24"}]],
            "routes": [{"dst": "10.244.0.0/16"}],
        },
    }
