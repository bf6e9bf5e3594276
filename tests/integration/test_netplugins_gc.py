"""SPEC 1.1 GC of our plugins: what an attachment missing from ``cni.dev/valid-attachments``
left on the host goes, what a valid one holds stays, other networks' state is never touched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from netplugins import ipconfig
from netplugins.iptables import chain_name
from tests.integration import test_netplugins_support as support
from tests.integration.test_netplugins_support import netns_path, run_plugin

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
