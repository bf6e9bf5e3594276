"""Differential tests: our loopback / bridge / host-local against the reference binaries.

Each case runs ours and then the reference on the same input (same bridge name, subnet,
container id, so chain names match), each in a fresh namespace with a fresh dataDir, takes a
snapshot of what matters with iproute2's own JSON output (independent of our pyroute2 code),
deletes, and checks nothing is left. The two snapshots must be equal.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from netplugins.iptables import chain_name
from tests.integration import test_netplugins_support as support
from tests.integration.test_netplugins_support import REF_DIR, ip_json, netns_path, run_plugin, sh

pytestmark = [pytest.mark.integration, support.needs_root, support.needs_reference]

CID = "npt-diff-0001"


def _vlans(ifname: str) -> Any:
    out = sh("bridge", "-j", "vlan", "show", "dev", ifname)
    data = json.loads(out or "[]")
    return [v.get("vlans") for v in data]


def _exercise(
    plugin_dir: str, res: support.Resources, conf: dict[str, Any], tmp: Path, ifname: str = "eth0"
) -> dict[str, Any]:
    """ADD, snapshot, CHECK, DEL, DEL again; return the snapshot plus the after-DEL state."""
    conf = copy.deepcopy(conf)
    data_dir = tmp / f"ipam-{os.path.basename(plugin_dir)}-{len(res.netns)}"
    if "ipam" in conf:
        conf["ipam"]["dataDir"] = str(data_dir)
    bridge = conf.get("bridge", "cni0")
    res.bridges.append(bridge)
    res.masq.append((conf["name"], CID))
    ns = res.new_netns()
    path = netns_path(ns)
    add = run_plugin(plugin_dir, "bridge", "ADD", conf, netns=path, container_id=CID, ifname=ifname)
    if add.code != 0:
        # e.g. "vlan" on a kernel without bridge VLAN filtering: fail the same way, leave nothing.
        return {
            "add_error_code": add.error["code"],
            "container_links": [link["ifname"] for link in ip_json("link", "show", netns=ns)],
            "state": sorted(support.state_files(data_dir, conf.get("name", ""))),
        }
    result = add.result
    ports = ip_json("link", "show", "master", bridge)
    assert len(ports) == 1
    veth = ports[0]["ifname"]
    snap: dict[str, Any] = {
        "result": support.normalise_result(result, path, veth),
        "container_link": support.link_summary(ifname, ns),
        "container_addrs": support.addresses(ifname, ns),
        "container_routes": support.routes(ifname, ns),
        "bridge": support.link_summary(bridge),
        "bridge_addrs": support.addresses(bridge),
        "host_veth": support.link_summary(veth),
        "vlans": _vlans(veth) if conf.get("vlan") else None,
        "iptables": support.nat_rules(chain_name(conf["name"], CID)),
        "state": support.state_files(data_dir, conf["name"]),
        "sysctls": support.sysctls(ns, ifname, veth, bridge),
    }
    if result.get("cniVersion") != "0.3.1":
        check_conf = dict(conf, prevResult=result)
        chk = run_plugin(
            plugin_dir, "bridge", "CHECK", check_conf, netns=path, container_id=CID, ifname=ifname
        )
        snap["check"] = chk.code
        if chk.code:
            snap["check_msg"] = chk.error["msg"]
    for _ in range(2):  # DEL is repeatable
        delete = run_plugin(
            plugin_dir, "bridge", "DEL", conf, netns=path, container_id=CID, ifname=ifname
        )
        assert delete.code == 0, delete.stdout
    snap["after_del"] = {
        "container_links": sorted(link["ifname"] for link in ip_json("link", "show", netns=ns)),
        "bridge_ports": ip_json("link", "show", "master", bridge),
        "iptables": support.nat_rules(chain_name(conf["name"], CID)),
        "state": sorted(support.state_files(data_dir, conf["name"])),
    }
    sh("ip", "link", "del", bridge)
    return snap


def _bridge_conf(version: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": version,
        "name": "npt-diffnet",
        "type": "bridge",
        "bridge": "nptdiff0",
        "ipam": {"type": "host-local", "subnet": "10.202.20.0/24"},
    }
    conf.update(extra)
    return conf


CASES = {
    "plain-0.3.1": _bridge_conf("0.3.1"),
    "gateway-0.4.0": _bridge_conf("0.4.0", isGateway=True),
    "default-gw-hairpin-mtu": _bridge_conf(
        "1.0.0", isDefaultGateway=True, hairpinMode=True, mtu=1400
    ),
    "promisc-masq": _bridge_conf("1.0.0", isGateway=True, promiscMode=True, ipMasq=True),
    "dual-stack": _bridge_conf(
        "1.0.0",
        isDefaultGateway=True,
        ipam={
            "type": "host-local",
            "ranges": [
                [{"subnet": "10.202.21.0/24", "rangeStart": "10.202.21.50"}],
                [{"subnet": "fd02:202::/64"}],
            ],
            "routes": [{"dst": "10.203.0.0/16"}],
        },
    ),
    "vlan": _bridge_conf("1.0.0", isGateway=True, vlan=100),
    "layer2-only": {
        "cniVersion": "1.0.0",
        "name": "npt-diffnet",
        "type": "bridge",
        "bridge": "nptdiff0",
    },
    "dns-passthrough": _bridge_conf(
        "1.0.0", dns={"nameservers": ["10.202.20.53"], "search": ["svc.local"]}
    ),
}


REFERENCE_CHECK_BUGS = {"dual-stack", "layer2-only"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bridge_matches_reference(case: str, ours: str, tmp_path: Path) -> None:
    conf = CASES[case]
    with support.resources() as res:
        mine = _exercise(ours, res, conf, tmp_path)
    with support.resources() as res:
        theirs = _exercise(REF_DIR, res, conf, tmp_path)
    if case in REFERENCE_CHECK_BUGS:
        # Debian's v1.1.1 bridge fails CHECK here (routes without a gateway are looked up with
        # gw=nil; an IPAM-less config calls CHECK on an empty IPAM type): ours passes.
        assert mine.pop("check") == 0
        assert theirs.pop("check") != 0
        theirs.pop("check_msg")
    assert mine == theirs
    if "add_error_code" in mine:
        return
    after = mine["after_del"]
    assert after["container_links"] == ["lo"]
    assert after["bridge_ports"] == []
    assert after["iptables"] == []
    assert all(not n[0].isdigit() and not n.startswith("fd") for n in after["state"])


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_loopback_matches_reference(version: str, ours: str) -> None:
    conf = {"cniVersion": version, "name": "npt-lo", "type": "loopback"}
    snaps = []
    for plugin_dir in (ours, REF_DIR):
        with support.resources() as res:
            ns = res.new_netns()
            add = run_plugin(plugin_dir, "loopback", "ADD", conf, netns=netns_path(ns), ifname="lo")
            up = support.link_summary("lo", ns)["up"]
            addrs = support.addresses("lo", ns)
            delete = run_plugin(
                plugin_dir, "loopback", "DEL", conf, netns=netns_path(ns), ifname="lo"
            )
            snaps.append(
                (
                    support.normalise_result(add.result, "", ""),
                    up,
                    addrs,
                    delete.code,
                    support.link_summary("lo", ns)["up"],
                )
            )
    assert snaps[0] == snaps[1]
    assert snaps[0][1] is True and snaps[0][4] is False


def test_del_tolerates_missing_netns_and_releases_address(ours: str, tmp_path: Path) -> None:
    conf = _bridge_conf("1.0.0", isGateway=True, bridge="nptdiff1")
    conf["ipam"]["dataDir"] = str(tmp_path)
    with support.resources() as res:
        res.bridges.append("nptdiff1")
        ns = res.new_netns()
        assert (
            run_plugin(ours, "bridge", "ADD", conf, netns=netns_path(ns), container_id=CID).code
            == 0
        )
        sh("ip", "netns", "del", ns)  # the namespace vanishes (node reboot, pid reuse...)
        for plugin, netns in (("bridge", ""), ("bridge", netns_path(ns)), ("loopback", "")):
            assert run_plugin(ours, plugin, "DEL", conf, netns=netns, container_id=CID).code == 0
        assert sorted(os.listdir(tmp_path / conf["name"])) == ["last_reserved_ip.0", "lock"]


def test_failed_add_leaves_nothing(ours: str, tmp_path: Path) -> None:
    """A range with no free address: ADD fails with the IPAM error, the veth is removed."""
    conf = _bridge_conf("1.0.0", bridge="nptdiff2")
    conf["ipam"] = {
        "type": "host-local",
        "subnet": "10.202.22.0/24",
        "rangeStart": "10.202.22.9",
        "rangeEnd": "10.202.22.9",
        "dataDir": str(tmp_path),
    }
    with support.resources() as res:
        res.bridges.append("nptdiff2")
        ns1, ns2 = res.new_netns(), res.new_netns()
        assert (
            run_plugin(ours, "bridge", "ADD", conf, netns=netns_path(ns1), container_id="a").code
            == 0
        )
        err = run_plugin(ours, "bridge", "ADD", conf, netns=netns_path(ns2), container_id="b")
        assert "no IP addresses available" in err.error["msg"]
        assert [link["ifname"] for link in ip_json("link", "show", netns=ns2)] == ["lo"]
        assert len(ip_json("link", "show", "master", "nptdiff2")) == 1


def test_reference_host_local_state_is_shared(ours: str, tmp_path: Path) -> None:
    """Reservations made by either plugin are honoured and released by the other."""
    ipam = {"type": "host-local", "subnet": "10.202.23.0/24", "dataDir": str(tmp_path)}
    conf = {"cniVersion": "1.0.0", "name": "npt-share", "ipam": ipam}
    kw = {"netns": "/run/netns/npt-unused"}  # host-local never enters it
    a = run_plugin(REF_DIR, "host-local", "ADD", conf, container_id="ref-1", **kw).result
    b = run_plugin(ours, "host-local", "ADD", conf, container_id="ours-1", **kw).result
    c = run_plugin(REF_DIR, "host-local", "ADD", conf, container_id="ref-2", **kw).result
    got = [r["ips"][0]["address"] for r in (a, b, c)]
    assert got == ["10.202.23.2/24", "10.202.23.3/24", "10.202.23.4/24"]
    assert run_plugin(ours, "host-local", "DEL", conf, container_id="ref-1", **kw).code == 0
    assert run_plugin(REF_DIR, "host-local", "DEL", conf, container_id="ours-1", **kw).code == 0
    left = sorted(p.name for p in (tmp_path / "npt-share").iterdir())
    assert left == ["10.202.23.4", "last_reserved_ip.0", "lock"]


@pytest.mark.parametrize("force", [False, True])
def test_bridge_with_foreign_address_matches_reference(
    force: bool, ours: str, tmp_path: Path
) -> None:
    """The bridge already holds another IPv4 address: error without forceAddress, replaced
    with it (reference ensureAddr)."""
    outcomes = []
    for plugin_dir in (ours, REF_DIR):
        conf = _bridge_conf("1.0.0", bridge="nptdiff3", isGateway=True, forceAddress=force)
        conf["ipam"]["dataDir"] = str(tmp_path / os.path.basename(plugin_dir))
        with support.resources() as res:
            res.bridges.append("nptdiff3")
            sh("ip", "link", "add", "nptdiff3", "type", "bridge")
            sh("ip", "addr", "add", "10.202.20.77/24", "dev", "nptdiff3")
            ns = res.new_netns()
            add = run_plugin(
                plugin_dir, "bridge", "ADD", conf, netns=netns_path(ns), container_id=CID
            )
            outcome: dict[str, Any] = {"code": add.code, "addrs": support.addresses("nptdiff3")}
            if add.code:
                outcome["error_code"] = add.error["code"]
                links = [link["ifname"] for link in ip_json("link", "show", netns=ns)]
                if plugin_dir == ours:  # the reference leaves eth0 for the runtime's DEL
                    assert links == ["lo"]
            run_plugin(plugin_dir, "bridge", "DEL", conf, netns=netns_path(ns), container_id=CID)
            outcomes.append(outcome)
    assert outcomes[0] == outcomes[1]
    assert (outcomes[0]["code"] == 0) is force


def test_del_fails_when_iptables_save_fails(ours: str, tmp_path: Path) -> None:
    """A snapshot that cannot be taken fails the DEL (the runtime keeps its cache and retries)
    instead of reporting success with the masquerade chain and its jump left behind."""
    conf = _bridge_conf("1.0.0", bridge="nptdiff5", isGateway=True, ipMasq=True)
    conf["ipam"] = {"type": "host-local", "subnet": "10.202.150.0/24", "dataDir": str(tmp_path)}
    broken = support.failing_tool(tmp_path / "broken", "iptables-save", "ip6tables-save")
    chain = chain_name(conf["name"], CID)
    with support.resources() as res:
        res.bridges.append("nptdiff5")
        res.masq.append((conf["name"], CID))
        path = netns_path(res.new_netns())
        assert run_plugin(ours, "bridge", "ADD", conf, netns=path, container_id=CID).result
        rules = support.nat_rules(chain)
        assert any("POSTROUTING" in r for r in rules)
        failed = run_plugin(
            ours, "bridge", "DEL", conf, netns=path, container_id=CID, path_prefix=broken
        )
        assert "iptables-save" in failed.error["msg"]
        assert support.nat_rules(chain) == rules  # nothing claimed done, nothing half done
        assert run_plugin(ours, "bridge", "DEL", conf, netns=path, container_id=CID).code == 0
        assert support.nat_rules(chain) == []


@pytest.mark.parametrize("plugin", ["bridge", "ptp"])
@pytest.mark.parametrize(
    "conf_dns",
    [None, {}, {"nameservers": ["10.202.152.53"], "search": ["conf.example"]}],
    ids=["no-dns", "empty-dns", "config-dns"],
)
def test_dns_from_ipam_kept_unless_config_sets_some(
    plugin: str, conf_dns: dict[str, Any] | None, ours: str, tmp_path: Path
) -> None:
    """host-local's resolvConf DNS survives a config without ``dns`` (upstream ``dnsConfSet``).

    The Debian ptp (v1.1.1) already behaves so and is compared; its bridge predates the fix
    upstream and still wipes the IPAM's DNS, so for bridge the expected values are spelled out.
    """
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.202.152.1\nsearch ipam.example\noptions ndots:2\n")
    outcomes: list[dict[str, Any]] = []
    for plugin_dir in (ours, REF_DIR) if plugin == "ptp" else (ours,):
        conf: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "name": "npt-dnsnet",
            "type": plugin,
            "bridge": "nptdiff6",
            "isGateway": True,
            "ipam": {
                "type": "host-local",
                "subnet": "10.202.152.0/24",
                "resolvConf": str(resolv),
                "dataDir": str(tmp_path / f"ipam-{len(outcomes)}"),
            },
        }
        if conf_dns is not None:
            conf["dns"] = conf_dns
        with support.resources() as res:
            res.bridges.append("nptdiff6")
            path = netns_path(res.new_netns())
            add = run_plugin(plugin_dir, plugin, "ADD", conf, netns=path)
            outcomes.append(add.result.get("dns") or {})
            assert run_plugin(plugin_dir, plugin, "DEL", conf, netns=path).code == 0
    assert all(outcome == outcomes[0] for outcome in outcomes)
    if conf_dns:
        assert outcomes[0] == conf_dns
    else:
        assert outcomes[0] == {
            "nameservers": ["10.202.152.1"],
            "search": ["ipam.example"],
            "options": ["ndots:2"],
        }


def test_sysctls_of_an_interface_with_a_dot_match_reference(ours: str, tmp_path: Path) -> None:
    """``eth0.100``: DAD off and arp_notify on, on that interface (not on ``eth0/100``)."""
    ifname = "eth0.100"
    knobs = [f"ipv6/conf/{ifname}/accept_dad", f"ipv4/conf/{ifname}/arp_notify"]
    outcomes: list[dict[str, str]] = []
    for plugin_dir in (ours, REF_DIR):
        conf = _bridge_conf("1.0.0", bridge="nptdiff7", isGateway=True)
        conf["ipam"] = {
            "type": "host-local",
            "ranges": [[{"subnet": "10.202.153.0/24"}], [{"subnet": "fd02:202:0:153::/64"}]],
            "dataDir": str(tmp_path / f"ipam-{len(outcomes)}"),
        }
        with support.resources() as res:
            res.bridges.append("nptdiff7")
            ns = res.new_netns()
            add = run_plugin(plugin_dir, "bridge", "ADD", conf, netns=netns_path(ns), ifname=ifname)
            assert add.result
            values = {k: sh("cat", f"/proc/sys/net/{k}", netns=ns).strip() for k in knobs}
            outcomes.append(values)
            assert run_plugin(plugin_dir, "bridge", "DEL", conf, netns=netns_path(ns)).code == 0
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == {knobs[0]: "0", knobs[1]: "1"}
