"""Issue 11 proofs 1-4 and 8 (repair) on one shared VXLAN simulation of three nodes with
`--ip-masq`, as flannel is deployed: leases in flannel's format, subnet.env and flannel.1,
node 1's table as the seed draws it, pod-to-pod without NAT, masquerade only out of the
cluster network, node-to-pod, the MTU at its limit, and repair of a deleted device or rule."""

from __future__ import annotations

import ipaddress
import shlex

import pytest

from tests.overlay.harness import (
    NETWORK,
    OUTSIDE_IP,
    Node,
    Simulation,
    probe,
    reachable,
    seen_sources,
    wait_for,
)

pytestmark = pytest.mark.integration

VXLAN_OVERHEAD = 50
UNDERLAY_MTU = 1500
MTU = UNDERLAY_MTU - VXLAN_OVERHEAD


def _peers(sim: Simulation, node: Node) -> list[Node]:
    return [peer for peer in sim.nodes.values() if peer is not node]


def _vtep_mac(node: Node) -> str:
    vtep = node.vtep()
    assert vtep is not None, f"{node.ns} has no {node.sim.vtep_name}"
    return str(vtep["address"])


def _target(rule: str) -> str:
    args = shlex.split(rule)
    return args[args.index("-j") + 1] if "-j" in args else ""


def _rules(save: str, chain: str, target: str = "") -> list[str]:
    """`chain`'s rules in iptables-save output (only those jumping to `target`, if given)."""
    return [
        line
        for line in save.splitlines()
        if line.startswith(f"-A {chain} ") and (not target or _target(line) == target)
    ]


# -- 1. allocation ---------------------------------------------------------------------------


def test_nodes_get_distinct_subnets_in_flannels_format(vxlan_sim: Simulation) -> None:
    network = ipaddress.ip_network(NETWORK)
    leases = vxlan_sim.leases()
    subnets = [node.subnet for node in vxlan_sim.nodes.values()]
    assert len(set(subnets)) == 3, subnets
    macs = [_vtep_mac(node) for node in vxlan_sim.nodes.values()]
    assert len(set(macs)) == 3, f"VTEP MACs must differ between nodes: {macs}"
    assert sorted(leases) == sorted(s.replace("/", "-") for s in subnets)
    for node in vxlan_sim.nodes.values():
        subnet = ipaddress.ip_network(node.subnet)
        assert subnet.subnet_of(network) and subnet.prefixlen == 24  # type: ignore[arg-type]
        assert subnet != next(network.subnets(new_prefix=24)), "the first subnet is never used"
        value, lease_id = leases[node.subnet.replace("/", "-")]
        assert value["PublicIP"] == node.public_ip
        assert value.get("PublicIPv6") is None
        assert value["BackendType"] == "vxlan"
        assert value["BackendData"] == {"VNI": 1, "VtepMAC": _vtep_mac(node)}
        assert set(value) <= {"PublicIP", "PublicIPv6", "BackendType", "BackendData"}
        assert lease_id != 0
        assert 86400 - 120 < vxlan_sim.lease_ttl(lease_id) <= 86400


# -- 2. subnet.env and the device ------------------------------------------------------------


def test_subnet_env_and_vxlan_device(vxlan_sim: Simulation) -> None:
    for node in vxlan_sim.nodes.values():
        env = node.subnet_env()
        base = node.vtep_ip.rsplit(".", 1)[0]
        assert env == {
            "FLANNEL_NETWORK": NETWORK,
            "FLANNEL_SUBNET": f"{base}.1/24",
            "FLANNEL_MTU": str(MTU),
            "FLANNEL_IPMASQ": "true",
        }
        vtep = node.vtep()
        assert vtep is not None
        info = vtep["linkinfo"]["info_data"]
        assert vtep["linkinfo"]["info_kind"] == "vxlan"
        assert (info["id"], info["local"], info["link"], info["port"], info["learning"]) == (
            1,
            node.public_ip,
            "eth0",
            8472,
            False,
        )
        assert vtep["mtu"] == MTU
        assert "UP" in vtep["flags"]
        v4 = [(a["local"], a["prefixlen"]) for a in vtep["addr_info"] if a["family"] == "inet"]
        assert v4 == [(node.vtep_ip, 32)]


# -- 3. node 1's table as the seed shows it --------------------------------------------------


def test_node1_table_as_the_seed_shows(vxlan_sim: Simulation) -> None:
    node1 = vxlan_sim.nodes[1]
    vtep = vxlan_sim.vtep_name
    via_vtep = [r for r in node1.routes() if r.get("dev") == vtep]
    expected_routes = [
        {"dst": peer.subnet, "gateway": peer.vtep_ip, "dev": vtep, "onlink": True}
        for peer in _peers(vxlan_sim, node1)
    ]
    got_routes = [
        {
            "dst": r["dst"],
            "gateway": r.get("gateway"),
            "dev": r["dev"],
            "onlink": "onlink" in r.get("flags", []),
        }
        for r in via_vtep
    ]
    assert sorted(got_routes, key=str) == sorted(expected_routes, key=str)
    neighbours = {n["dst"]: (n.get("lladdr"), n.get("state")) for n in node1.neighbours()}
    fdb = {f["mac"]: (f.get("dst"), f.get("state"), f.get("flags")) for f in node1.fdb()}
    for peer in _peers(vxlan_sim, node1):
        mac = _vtep_mac(peer)
        assert neighbours[peer.vtep_ip] == (mac, ["PERMANENT"])
        assert fdb[mac] == (peer.public_ip, "permanent", ["self"])
    assert node1.vtep_ip not in neighbours
    assert len(neighbours) == 2 and len(fdb) == 2, (neighbours, fdb)


# -- 4. traffic ------------------------------------------------------------------------------


def test_pod_to_pod_across_nodes_without_nat(vxlan_sim: Simulation) -> None:
    pod1 = vxlan_sim.nodes[1].pods[0]
    for node in _peers(vxlan_sim, vxlan_sim.nodes[1]):
        remote = node.pods[0]
        seen = seen_sources(vxlan_sim, pod1.name, remote.name, remote.ip)
        assert seen == {"icmp": pod1.ip, "udp": pod1.ip, "tcp": pod1.ip}, remote
        untranslated = (pod1.ip, remote.ip, remote.ip, pod1.ip)
        assert [e for e in vxlan_sim.nodes[1].conntrack() if e[1:] == untranslated]
        back = seen_sources(vxlan_sim, remote.name, pod1.name, pod1.ip)
        assert back == {"icmp": remote.ip, "udp": remote.ip, "tcp": remote.ip}


def test_ip_masq_rules_and_the_plugin_leaves_masquerade_to_the_daemon(
    vxlan_sim: Simulation,
) -> None:
    node1 = vxlan_sim.nodes[1]
    nat = node1.iptables_save("nat")
    assert _rules(nat, "POSTROUTING", "FLANNEL-POSTRTG")
    rules = _rules(nat, "FLANNEL-POSTRTG")
    assert any(f"-s {node1.subnet} -d {NETWORK}" in r and "RETURN" in r for r in rules), rules
    assert any(f"-s {NETWORK} ! -d 224.0.0.0/4" in r and "MASQUERADE" in r for r in rules)
    # FLANNEL_IPMASQ=true: our flannel plugin told bridge not to masquerade (no CNI- nat chain).
    assert not [line for line in nat.splitlines() if line.startswith(":CNI-")], nat
    forward = node1.iptables_save("filter")
    assert _rules(forward, "FORWARD", "FLANNEL-FWD")
    accepts = _rules(forward, "FLANNEL-FWD", "ACCEPT")
    assert any(f"-s {NETWORK}" in r for r in accepts) and any(f"-d {NETWORK}" in r for r in accepts)


def test_pod_to_outside_the_cluster_is_masqueraded(vxlan_sim: Simulation) -> None:
    node1 = vxlan_sim.nodes[1]
    pod1 = node1.pods[0]
    seen = seen_sources(vxlan_sim, pod1.name, vxlan_sim.fab, OUTSIDE_IP)
    assert seen == {"icmp": node1.public_ip, "udp": node1.public_ip, "tcp": node1.public_ip}
    # The node's conntrack shows the translation: replies come back to the node's address.
    nat = {
        e[0]
        for e in node1.conntrack()
        if e[1:] == (pod1.ip, OUTSIDE_IP, OUTSIDE_IP, node1.public_ip)
    }
    assert nat == {"icmp", "udp", "tcp"}, node1.conntrack()


def test_node_to_remote_pod_uses_the_vtep_address(vxlan_sim: Simulation) -> None:
    node1, node2 = vxlan_sim.nodes[1], vxlan_sim.nodes[2]
    remote = node2.pods[0]
    seen = seen_sources(vxlan_sim, node1.ns, remote.name, remote.ip)
    assert seen == {"icmp": node1.vtep_ip, "udp": node1.vtep_ip, "tcp": node1.vtep_ip}


def test_mtu_holds_df_at_the_limit_passes_one_more_byte_fails(vxlan_sim: Simulation) -> None:
    pod1, remote = vxlan_sim.nodes[1].pods[0], vxlan_sim.nodes[3].pods[0]
    assert reachable(pod1.name, remote.ip, size=MTU, df=True)
    code, result = probe(pod1.name, "ping", remote.ip, "--size", str(MTU + 1), "--df")
    assert code != 0 and result["received"] == 0
    # From the node the pod's veth does not limit: flannel.1's MTU must.
    node1 = vxlan_sim.nodes[1]
    assert reachable(node1.ns, remote.ip, size=MTU, df=True)
    code, result = probe(node1.ns, "ping", remote.ip, "--size", str(MTU + 1), "--df")
    assert code != 0 and result["received"] == 0


# -- 8. repair (left to the end: they break and expect the daemon to mend) -----------------------


def test_deleted_vxlan_device_is_restored(vxlan_sim: Simulation) -> None:
    node1, node2 = vxlan_sim.nodes[1], vxlan_sim.nodes[2]
    node2.exec("ip", "link", "del", vxlan_sim.vtep_name)
    pod1, remote = node1.pods[0], node2.pods[0]

    def repaired() -> bool:
        vtep = node2.vtep()
        if vtep is None or "UP" not in vtep["flags"]:
            return False
        dsts = {r["dst"] for r in node2.routes() if r.get("dev") == vxlan_sim.vtep_name}
        return dsts == {p.subnet for p in _peers(vxlan_sim, node2)}

    wait_for("flannel.1 of node 2 to be recreated with its peers", repaired, timeout=15)

    def mac_published() -> bool:
        mac = _vtep_mac(node2)
        value, _ = vxlan_sim.leases()[node2.subnet.replace("/", "-")]
        neighbours = {n["dst"]: n.get("lladdr") for n in node1.neighbours()}
        return bool(value["BackendData"]["VtepMAC"] == mac == neighbours.get(node2.vtep_ip))

    # Whatever MAC the new device has, the lease and the peers must carry it.
    wait_for("the lease and node 1 to carry node 2's VTEP MAC", mac_published, timeout=10)
    wait_for("pod 1 -> pod on node 2 again", lambda: reachable(pod1.name, remote.ip), timeout=15)
    assert node2.running()


def test_deleted_iptables_rule_is_restored(vxlan_sim: Simulation) -> None:
    node1 = vxlan_sim.nodes[1]
    [jump] = _rules(node1.iptables_save("filter"), "FORWARD", "FLANNEL-FWD")
    node1.exec("iptables", "-w", "-t", "filter", "-D", *shlex.split(jump)[1:])
    node1.exec("iptables", "-w", "-t", "nat", "-F", "FLANNEL-POSTRTG")
    assert not _rules(node1.iptables_save("filter"), "FORWARD", "FLANNEL-FWD")

    def restored() -> bool:
        masq = _rules(node1.iptables_save("nat"), "FLANNEL-POSTRTG", "MASQUERADE")
        return bool(_rules(node1.iptables_save("filter"), "FORWARD", "FLANNEL-FWD") and masq)

    took = wait_for("FLANNEL-* rules to be restored", restored, timeout=10, log=node1)
    assert took <= 6, f"restored after {took:.1f}s; --iptables-resync is 1 s"
