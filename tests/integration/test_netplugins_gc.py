"""SPEC 1.1 GC of our plugins: what an attachment missing from ``cni.dev/valid-attachments``
left on the host goes, what a valid one holds stays, other networks' state is never touched."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from netplugins import ipconfig
from netplugins.bandwidth import ifb_name
from netplugins.iptables import chain_name
from tests.integration import test_netplugins_support as support
from tests.integration.test_netplugins_support import ip_json, netns_path, run_plugin, sh

pytestmark = [pytest.mark.integration, support.needs_root]

KEEP, LOST = "npt-gcm-keep", "npt-gcm-lost"


def _masq_conf(plugin: str, tmp_path: Path) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": "1.1.0",
        "name": f"npt-gcm-{plugin}",
        "type": plugin,
        "ipMasq": True,
        "ipam": {
            "type": "host-local",
            "subnet": "10.202.25.0/24" if plugin == "bridge" else "10.202.26.0/24",
            "dataDir": str(tmp_path),
        },
    }
    if plugin == "bridge":
        conf.update(bridge="nptgcm0", isGateway=True)
    return conf


@pytest.mark.parametrize("plugin", ["bridge", "ptp"])
def test_gc_removes_masquerade_of_lost_attachments_only(
    plugin: str, ours: str, tmp_path: Path
) -> None:
    conf = _masq_conf(plugin, tmp_path)
    net = conf["name"]
    # Same container id, other network whose name starts like ours: must survive our GC.
    other = f"{net}-other"
    with support.resources() as res:
        res.bridges.append("nptgcm0")
        res.masq += [(net, KEEP), (net, LOST), (other, LOST)]
        for cid in (KEEP, LOST):
            ns = netns_path(res.new_netns())
            assert run_plugin(ours, plugin, "ADD", conf, netns=ns, container_id=cid).code == 0
        ipconfig.setup_masquerade(other, LOST, [{"address": "10.202.27.9/24"}])
        kept = support.nat_rules(chain_name(net, KEEP))
        other_rules = support.nat_rules(chain_name(other, LOST))
        assert len(kept) == 4 and support.nat_rules(chain_name(net, LOST))

        gc_conf = dict(
            conf, **{"cni.dev/valid-attachments": [{"containerID": KEEP, "ifname": "eth0"}]}
        )
        gc = run_plugin(ours, plugin, "GC", gc_conf, container_id="", ifname="")
        assert gc.code == 0, gc.stdout

        assert support.nat_rules(chain_name(net, LOST)) == []
        assert support.nat_rules(chain_name(net, KEEP)) == kept
        assert support.nat_rules(chain_name(other, LOST)) == other_rules
        held = [n for n in os.listdir(tmp_path / net) if n[0].isdigit()]
        assert len(held) == 1  # the lost attachment's address went too (IPAM GC)


RECORDER = """#!{python}
import json, os, sys
keys = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME")
entry = {{k: os.environ.get(k) for k in keys}}
entry["conf"] = json.load(sys.stdin)
with open({log!r}, "a") as fh:
    fh.write(json.dumps(entry) + "\\n")
if entry["CNI_COMMAND"] == "DEL" and entry["CNI_CONTAINERID"] == "npt-gcf-stuck":
    print(json.dumps({{"cniVersion": "1.1.0", "code": 999, "msg": "stuck"}}))
    sys.exit(1)
"""


def test_flannel_gc_deletes_this_networks_lost_attachments_with_their_saved_delegate(
    ours: str, tmp_path: Path
) -> None:
    """A delegate that records its calls: stale attachments of this network get DEL with the
    saved configuration (no netns, default ifname), their file goes only when DEL succeeded;
    another flannel network's files in the shared dataDir and valid attachments are untouched;
    the delegate's GC runs last."""
    bin_dir, data_dir, log = tmp_path / "bin", tmp_path / "flannel", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    data_dir.mkdir()
    recorder = bin_dir / "npt-rec"
    recorder.write_text(RECORDER.format(python=sys.executable, log=str(log)))
    recorder.chmod(0o755)
    subnet_file = tmp_path / "subnet.env"
    subnet_file.write_text(
        "FLANNEL_NETWORK=10.202.28.0/22\nFLANNEL_SUBNET=10.202.28.1/24\n"
        "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
    )
    saved = {
        "npt-gcf-keep": {"name": "npt-gcf", "type": "npt-rec", "cniVersion": "1.1.0"},
        "npt-gcf-lost": {"name": "npt-gcf", "type": "npt-rec", "cniVersion": "1.1.0", "x": 1},
        "npt-gcf-stuck": {"name": "npt-gcf", "type": "npt-rec", "cniVersion": "1.1.0"},
        "npt-gcf-theirs": {"name": "npt-gcf-other", "type": "npt-rec", "cniVersion": "1.1.0"},
    }
    for cid, delegate in saved.items():
        (data_dir / cid).write_text(json.dumps(delegate))
    conf = {
        "cniVersion": "1.1.0",
        "name": "npt-gcf",
        "type": "flannel",
        "subnetFile": str(subnet_file),
        "dataDir": str(data_dir),
        "delegate": {"type": "npt-rec"},
        "cni.dev/valid-attachments": [{"containerID": "npt-gcf-keep", "ifname": "eth0"}],
    }
    gc = run_plugin(
        ours, "flannel", "GC", conf, container_id="", ifname="", cni_path=f"{bin_dir}:{ours}"
    )

    assert gc.error["msg"] == "failed to delete stale attachment npt-gcf-stuck: stuck"
    assert sorted(os.listdir(data_dir)) == ["npt-gcf-keep", "npt-gcf-stuck", "npt-gcf-theirs"]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    dels = [c for c in calls if c["CNI_COMMAND"] == "DEL"]
    assert [(c["CNI_CONTAINERID"], c["CNI_NETNS"], c["CNI_IFNAME"]) for c in dels] == [
        ("npt-gcf-lost", "", "eth0"),
        ("npt-gcf-stuck", "", "eth0"),
    ]
    assert [c["conf"] for c in dels] == [saved["npt-gcf-lost"], saved["npt-gcf-stuck"]]
    assert [c["CNI_COMMAND"] for c in calls] == ["DEL", "DEL", "GC"]
    assert calls[-1]["conf"]["cni.dev/valid-attachments"] == conf["cni.dev/valid-attachments"]


def test_bandwidth_gc_removes_ifb_of_lost_attachments_only(ours: str, tmp_path: Path) -> None:
    """ifb devices of this network's lost attachments go; the valid one's and another
    network's (same container id) stay."""
    net, other = "npt-gcb", "npt-gcb-other"
    attachments = [(net, KEEP, "10.202.32.0/24"), (net, LOST, "10.202.32.0/24")]
    attachments.append((other, LOST, "10.202.33.0/24"))
    with support.resources() as res:
        for network, cid, subnet in attachments:
            res.links.append(ifb_name(network, cid))
            ns = netns_path(res.new_netns())
            ipam = {"type": "host-local", "subnet": subnet, "dataDir": str(tmp_path)}
            ptp = {"cniVersion": "1.1.0", "name": network, "type": "ptp", "ipam": ipam}
            prev = run_plugin(ours, "ptp", "ADD", ptp, netns=ns, container_id=cid).result
            conf = {
                "cniVersion": "1.1.0",
                "name": network,
                "type": "bandwidth",
                "egressRate": 500000,
                "egressBurst": 16000,
                "prevResult": prev,
            }
            assert run_plugin(ours, "bandwidth", "ADD", conf, netns=ns, container_id=cid).code == 0
        ours_ifbs = {ifb_name(n, c) for n, c, _ in attachments}  # others' devices left out
        before = {link["ifname"] for link in ip_json("link", "show", "type", "ifb")} & ours_ifbs
        assert before == ours_ifbs

        gc_conf = {
            "cniVersion": "1.1.0",
            "name": net,
            "type": "bandwidth",
            "cni.dev/valid-attachments": [{"containerID": KEEP, "ifname": "eth0"}],
        }
        gc = run_plugin(ours, "bandwidth", "GC", gc_conf, container_id="", ifname="")
        assert gc.code == 0, gc.stdout

        after = {link["ifname"] for link in ip_json("link", "show", "type", "ifb")} & ours_ifbs
        assert after == before - {ifb_name(net, LOST)}


def test_tuning_gc_forgets_state_of_lost_attachments_only(ours: str, tmp_path: Path) -> None:
    """Saved state of this network's lost attachment goes (with its owner record); the valid
    one's, another network's (same container id) and ownerless (reference) state stay."""
    net, other = "npt-gct", "npt-gct-other"
    (tmp_path / "npt-gct-ref_eth0.json").write_text('{"mtu": 1500}')
    with support.resources() as res:
        for network, cid, ifname in (
            (net, KEEP, "eth0"),
            (net, LOST, "eth0"),
            (other, LOST, "net1"),
        ):
            ns = res.new_netns()
            sh("ip", "link", "add", ifname, "type", "veth", "peer", "name", "peer0", netns=ns)
            conf = {
                "cniVersion": "1.1.0",
                "name": network,
                "type": "tuning",
                "mtu": 1300,
                "dataDir": str(tmp_path),
                "prevResult": {
                    "cniVersion": "1.1.0",
                    "interfaces": [{"name": ifname, "sandbox": netns_path(ns)}],
                },
            }
            add = run_plugin(
                ours, "tuning", "ADD", conf, netns=netns_path(ns), container_id=cid, ifname=ifname
            )
            assert add.code == 0, add.stdout
        gc_conf = {
            "cniVersion": "1.1.0",
            "name": net,
            "type": "tuning",
            "dataDir": str(tmp_path),
            "cni.dev/valid-attachments": [{"containerID": KEEP, "ifname": "eth0"}],
        }
        gc = run_plugin(ours, "tuning", "GC", gc_conf, container_id="", ifname="")
        assert gc.code == 0, gc.stdout

    kept = [f"{KEEP}_eth0.json", f"{LOST}_net1.json"]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(
        [*kept, "npt-gct-ref_eth0.json"]
    )
    assert sorted(p.name for p in tmp_path.glob(".owners/*")) == sorted(kept)
