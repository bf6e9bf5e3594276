"""Our plugin chains through cnilib (the shim's path, with the warm worker), end to end.

- the flannel conflist of the seed (flannel delegating to bridge + host-local, then portmap),
  as written except for the paths and names this shared machine requires;
- connectivity between namespaces the test creates: pod to pod across the bridge, node to pod,
  pod to itself through its own host port (hairpin), node's 127.0.0.1 to a host port;
- portmap's iptables rules are the reference's, and DEL removes exactly its own;
- 50 parallel ADDs on one network give 50 distinct addresses, 50 parallel DELs free them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cnilib.api import CNIConfig
from cnilib.conf import parse_conf_list
from cnilib.errors import CNIError
from cnilib.types import GCAttachment, NetworkConfigList, RuntimeConf
from netplugins.iptables import chain_name
from netplugins.warm import WarmExecutor
from tests.integration import test_netplugins_support as support
from tests.integration.test_netplugins_support import (
    REF_DIR,
    ip_json,
    netns_path,
    run_plugin,
    sh,
    tcp_listener,
    tcp_request,
)

pytestmark = [pytest.mark.integration, support.needs_root]

BRIDGE = "nptchain0"
SUBNET_PREFIX = "10.203.41"


@pytest.fixture(scope="module")
def warm() -> Iterator[WarmExecutor]:
    with WarmExecutor() as executor:
        yield executor


@pytest.fixture
def res() -> Iterator[support.Resources]:
    with support.resources() as r:
        yield r


def seed_flannel_conflist(tmp: Path) -> NetworkConfigList:
    """The seed's 10-flannel.conflist; only paths/names changed (shared-machine rules)."""
    (tmp / "subnet.env").write_text(
        "FLANNEL_NETWORK=10.203.0.0/16\n"
        f"FLANNEL_SUBNET={SUBNET_PREFIX}.1/24\n"
        "FLANNEL_MTU=1410\n"
        "FLANNEL_IPMASQ=true\n"
    )
    conflist = {
        "name": "cbr0",
        "cniVersion": "0.3.1",
        "plugins": [
            {
                "type": "flannel",
                "delegate": {"hairpinMode": True, "isDefaultGateway": True, "bridge": BRIDGE},
                "subnetFile": str(tmp / "subnet.env"),
                "dataDir": str(tmp / "flannel"),
                "ipam": {"dataDir": str(tmp / "ipam")},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return parse_conf_list(json.dumps(conflist).encode())


def _pod(
    cni: CNIConfig,
    net: NetworkConfigList,
    res: support.Resources,
    cid: str,
    ports: list[dict[str, Any]],
) -> tuple[RuntimeConf, str, str]:
    ns = res.new_netns()
    rt = RuntimeConf(
        container_id=cid,
        netns=netns_path(ns),
        ifname="eth0",
        args=(("IgnoreUnknown", "1"), ("K8S_POD_NAME", cid)),
        capability_args={"portMappings": ports},
    )
    res.portmaps.append((net.name, cid))
    result = cni.add_network_list(net, rt)
    (ip,) = [str(ip.address.ip) for ip in result.ips]
    return rt, ns, ip


def test_seed_flannel_chain_connectivity(
    ours: str, warm: WarmExecutor, res: support.Resources, tmp_path: Path
) -> None:
    res.bridges.append(BRIDGE)
    res.allow_forwarding(BRIDGE)
    net = seed_flannel_conflist(tmp_path)
    cni = CNIConfig([ours], str(tmp_path / "cache"), executor=warm)
    mapping = [{"hostPort": 32011, "containerPort": 8080, "protocol": "tcp"}]
    rt_a, ns_a, ip_a = _pod(cni, net, res, "npt-pod-a", mapping)
    rt_b, ns_b, ip_b = _pod(cni, net, res, "npt-pod-b", [])
    assert ip_a != ip_b and ip_a.startswith(SUBNET_PREFIX) and ip_b.startswith(SUBNET_PREFIX)
    gateway = f"{SUBNET_PREFIX}.1"

    # The saved delegate is what the reference flannel would have produced.
    saved = json.loads((tmp_path / "flannel" / "npt-pod-a").read_text())
    assert saved["type"] == "bridge" and saved["ipMasq"] is False and saved["mtu"] == 1410
    assert saved["ipam"]["ranges"] == [[{"subnet": f"{SUBNET_PREFIX}.0/24"}]]
    (link,) = ip_json("-d", "link", "show", "dev", "eth0", netns=ns_a)
    assert link["mtu"] == 1410
    ports = ip_json("-d", "link", "show", "master", BRIDGE)
    assert all(p["linkinfo"]["info_slave_data"]["hairpin"] for p in ports)

    tcp_listener(res, ns_a, 8080)
    tcp_listener(res, ns_b, 8080)
    assert tcp_request(ip_a, 8080, netns=ns_b) == f"pong {ns_a}"  # pod to pod
    assert tcp_request(ip_b, 8080) == f"pong {ns_b}"  # node to pod
    assert tcp_request(gateway, 32011, netns=ns_a) == f"pong {ns_a}"  # hairpin via host port
    assert tcp_request(gateway, 32011, netns=ns_b) == f"pong {ns_a}"  # neighbour via host port
    assert tcp_request("127.0.0.1", 32011) == f"pong {ns_a}"  # node's localhost
    assert sh("sysctl", "-n", f"net.ipv4.conf.{BRIDGE}.route_localnet").strip() == "1"

    for rt in (rt_a, rt_b):
        cni.del_network_list(net, rt)
        cni.del_network_list(net, rt)  # repeatable
    assert tcp_request("127.0.0.1", 32011, timeout=1).startswith("ERROR")
    assert not os.listdir(tmp_path / "flannel")
    assert sorted(os.listdir(tmp_path / "ipam" / "cbr0")) == ["last_reserved_ip.0", "lock"]
    assert ip_json("link", "show", "master", BRIDGE) == []
    dn_chain = chain_name("cbr0", "npt-pod-a", "DN-")
    assert dn_chain not in sh("iptables", "-w", "-t", "nat", "-S")


def _portmap_on_our_bridge(
    ours: str,
    res: support.Resources,
    network: str,
    bridge: str,
    ipam: dict[str, Any],
    mappings: list[dict[str, Any]],
) -> tuple[str, dict[str, Any], str]:
    """A new netns attached to ``bridge`` by our bridge plugin, and a portmap conf for
    ``mappings`` chained on that result (container ``npt-c1``, its DNAT chain cleaned up by
    ``res``). Returns (netns name, portmap conf, DNAT chain name)."""
    res.bridges.append(bridge)
    ns = res.new_netns()
    bridge_conf = {
        "cniVersion": "1.0.0",
        "name": network,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipam": ipam,
    }
    prev = run_plugin(ours, "bridge", "ADD", bridge_conf, netns=netns_path(ns)).result
    pm_conf = {
        "cniVersion": "1.0.0",
        "name": network,
        "type": "portmap",
        "runtimeConfig": {"portMappings": mappings},
        "prevResult": prev,
    }
    res.portmaps.append((network, "npt-c1"))
    return ns, pm_conf, chain_name(network, "npt-c1", "DN-")


@support.needs_reference
def test_portmap_rules_match_reference(ours: str, res: support.Resources, tmp_path: Path) -> None:
    """Same chain, same prevResult: ours and the reference write the same rules."""
    ipam = {"type": "host-local", "subnet": "10.202.42.0/24", "dataDir": str(tmp_path)}
    mappings = [
        {"hostPort": 32021, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 32022, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
    ]
    ns, pm_conf, chain = _portmap_on_our_bridge(ours, res, "npt-pm", "nptpm0", ipam, mappings)
    prev = pm_conf["prevResult"]

    def rules() -> list[str]:
        out = sh("iptables", "-w", "-t", "nat", "-S").splitlines()
        return sorted(line for line in out if chain in line)

    snaps = []
    for plugin_dir in (ours, REF_DIR):
        add = run_plugin(plugin_dir, "portmap", "ADD", pm_conf, netns=netns_path(ns))
        assert add.result["ips"] == json.loads(json.dumps(prev))["ips"]
        added = rules()
        check = run_plugin(plugin_dir, "portmap", "CHECK", pm_conf, netns=netns_path(ns))
        for _ in range(2):
            assert run_plugin(plugin_dir, "portmap", "DEL", pm_conf, netns=netns_path(ns)).code == 0
        snaps.append((added, rules()))
        if plugin_dir == ours:
            assert check.code == 0
    assert snaps[0] == snaps[1]
    assert len(snaps[0][0]) == 1 + 2 + 6  # -N chain, two jumps into it, three rules per mapping
    assert snaps[0][1] == []


def test_fifty_parallel_adds_and_dels(
    ours: str, warm: WarmExecutor, res: support.Resources, tmp_path: Path
) -> None:
    res.bridges.append("nptpar0")
    conflist = {
        "cniVersion": "1.0.0",
        "name": "npt-par",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "nptpar0",
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.202.43.0/24",
                    "dataDir": str(tmp_path / "ipam"),
                },
            }
        ],
    }
    net = parse_conf_list(json.dumps(conflist).encode())
    cni = CNIConfig([ours], str(tmp_path / "cache"), executor=warm)
    runtimes = [
        RuntimeConf(container_id=f"npt-par-{i}", netns=netns_path(res.new_netns()), ifname="eth0")
        for i in range(50)
    ]
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda rt: cni.add_network_list(net, rt), runtimes))
    addresses = {str(r.ips[0].address.ip) for r in results}
    assert len(addresses) == 50
    held = [n for n in os.listdir(tmp_path / "ipam" / "npt-par") if n[0].isdigit()]
    assert sorted(held) == sorted(addresses)
    assert len(ip_json("link", "show", "master", "nptpar0")) == 50
    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(lambda rt: cni.del_network_list(net, rt), runtimes))
    held = [n for n in os.listdir(tmp_path / "ipam" / "npt-par") if n[0].isdigit()]
    assert held == []
    assert ip_json("link", "show", "master", "nptpar0") == []


def test_fifty_parallel_cold_execs_of_host_local(ours: str, tmp_path: Path) -> None:
    """The flock in the state dir serialises separate processes, not just threads."""
    conf = {
        "cniVersion": "1.0.0",
        "name": "npt-cold",
        "ipam": {"type": "host-local", "subnet": "10.202.44.0/24", "dataDir": str(tmp_path)},
    }

    def call(i: int, command: str) -> Any:
        return run_plugin(ours, "host-local", command, conf, netns="/x", container_id=f"c{i}")

    with ThreadPoolExecutor(max_workers=50) as pool:
        adds = list(pool.map(lambda i: call(i, "ADD"), range(50)))
    addresses = {run.result["ips"][0]["address"] for run in adds}
    assert len(addresses) == 50
    with ThreadPoolExecutor(max_workers=50) as pool:
        dels = list(pool.map(lambda i: call(i, "DEL"), range(50)))
    assert all(d.code == 0 for d in dels)
    assert sorted(os.listdir(tmp_path / "npt-cold")) == ["last_reserved_ip.0", "lock"]


def test_gc_releases_what_leaked(
    ours: str, warm: WarmExecutor, res: support.Resources, tmp_path: Path
) -> None:
    """SPEC 1.1 GC through cnilib: an attachment the runtime never cached (a leak: ADD done,
    result lost) loses its address, its saved delegate and its port forward; the valid one
    keeps everything."""
    res.bridges.append("nptgc0")
    net = seed_flannel_conflist(tmp_path)
    raw = json.loads(net.bytes)
    raw["cniVersion"] = "1.1.0"
    raw["plugins"][0]["delegate"]["bridge"] = "nptgc0"
    net = parse_conf_list(json.dumps(raw).encode())
    cni = CNIConfig([ours], str(tmp_path / "cache"), executor=warm)
    mapping = [{"hostPort": 32031, "containerPort": 80, "protocol": "tcp"}]
    _pod(cni, net, res, "npt-gc-keep", mapping)

    leaked_ns = netns_path(res.new_netns())
    res.portmaps.append((net.name, "npt-gc-leak"))
    flannel_conf = dict(raw["plugins"][0], name=net.name, cniVersion="1.1.0")
    prev = run_plugin(
        ours, "flannel", "ADD", flannel_conf, netns=leaked_ns, container_id="npt-gc-leak"
    ).result
    portmap_conf = {
        "type": "portmap",
        "name": net.name,
        "cniVersion": "1.1.0",
        "runtimeConfig": {"portMappings": [dict(mapping[0], hostPort=32032)]},
        "prevResult": prev,
    }
    assert (
        run_plugin(
            ours, "portmap", "ADD", portmap_conf, netns=leaked_ns, container_id="npt-gc-leak"
        ).code
        == 0
    )
    leaked_ip = prev["ips"][0]["address"].split("/")[0]

    cni.gc_network_list(net, [GCAttachment("npt-gc-keep", "eth0")])

    held = os.listdir(tmp_path / "ipam" / "cbr0")
    assert leaked_ip not in held and len([n for n in held if n[0].isdigit()]) == 1
    assert os.listdir(tmp_path / "flannel") == ["npt-gc-keep"]
    nat = sh("iptables", "-w", "-t", "nat", "-S")
    assert chain_name("cbr0", "npt-gc-leak", "DN-") not in nat
    assert chain_name("cbr0", "npt-gc-keep", "DN-") in nat
    cni.del_network_list(net, RuntimeConf("npt-gc-keep", "", "eth0"))


def test_dual_stack_pods_reach_each_other(
    ours: str, warm: WarmExecutor, res: support.Resources, tmp_path: Path
) -> None:
    """bridge + host-local with an IPv4 and an IPv6 range set: both families work pod to pod."""
    res.bridges.append("nptds0")
    res.allow_forwarding("nptds0")
    conflist = {
        "cniVersion": "1.0.0",
        "name": "npt-ds",
        "plugins": [
            {"type": "loopback"},
            {
                "type": "bridge",
                "bridge": "nptds0",
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.202.46.0/24"}], [{"subnet": "fd02:202::/64"}]],
                    "dataDir": str(tmp_path / "ipam"),
                },
            },
        ],
    }
    net = parse_conf_list(json.dumps(conflist).encode())
    cni = CNIConfig([ours], str(tmp_path / "cache"), executor=warm)
    pods = []
    for i in range(2):
        ns = res.new_netns()
        rt = RuntimeConf(container_id=f"npt-ds-{i}", netns=netns_path(ns), ifname="eth0")
        result = cni.add_network_list(net, rt)
        v4, v6 = (str(ip.address.ip) for ip in result.ips)
        assert ":" in v6 and ":" not in v4
        pods.append((rt, ns, v4, v6))
    (_, ns_a, v4_a, v6_a), (_, ns_b, _, _) = pods
    tcp_listener(res, ns_a, 8080, host="::")
    assert tcp_request(v6_a, 8080, netns=ns_b) == f"pong {ns_a}"
    assert tcp_request(v4_a, 8080, netns=ns_b) == f"pong {ns_a}"  # dual-stack socket
    for rt, _, _, _ in pods:
        cni.check_network_list(net, rt)  # CHECK with the cached result as prevResult
    sh("ip", "link", "set", "lo", "down", netns=ns_b)
    with pytest.raises(CNIError):
        cni.check_network_list(net, pods[1][0])  # loopback notices
    for rt, _, _, _ in pods:
        cni.del_network_list(net, rt)
    held = [n for n in os.listdir(tmp_path / "ipam" / "npt-ds") if n[0].isdigit() or ":" in n]
    assert held == []


@support.needs_reference
def test_portmap_dual_stack_rules_match_reference(
    ours: str, res: support.Resources, tmp_path: Path
) -> None:
    ipam = {
        "type": "host-local",
        "ranges": [[{"subnet": "10.202.47.0/24"}], [{"subnet": "fd02:202::/64"}]],
        "dataDir": str(tmp_path),
    }
    mappings = [
        {"hostPort": 32041, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 32042, "containerPort": 80, "protocol": "tcp", "hostIP": "::1"},
    ]
    ns, pm_conf, chain = _portmap_on_our_bridge(ours, res, "npt-pm6", "nptpm6", ipam, mappings)

    snaps = []
    for plugin_dir in (ours, REF_DIR):
        assert run_plugin(plugin_dir, "portmap", "ADD", pm_conf, netns=netns_path(ns)).code == 0
        added = support.nat_rules(chain)
        assert run_plugin(plugin_dir, "portmap", "DEL", pm_conf, netns=netns_path(ns)).code == 0
        snaps.append((added, support.nat_rules(chain)))
    assert snaps[0] == snaps[1]
    assert any(r.startswith("ip6tables") and "[fd02:202::2]:80" in r for r in snaps[0][0])
    assert snaps[0][1] == []
