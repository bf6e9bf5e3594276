"""Differential tests for bandwidth against the reference binary, chained after our ptp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from netplugins.bandwidth import ifb_name
from tests.integration import test_netplugins_support as support
from tests.integration.test_netplugins_support import REF_DIR, ip_json, netns_path, run_plugin, sh

pytestmark = [pytest.mark.integration, support.needs_root, support.needs_reference]

CID = "npt-bw-0001"
NETWORK = "npt-bw"


def _qdiscs(dev: str) -> list[dict[str, Any]]:
    out = []
    for q in json.loads(sh("tc", "-j", "qdisc", "show", "dev", dev) or "[]"):
        opts = q.get("options", {})
        out.append(
            {
                "kind": q["kind"],
                "handle": q["handle"],
                "rate": opts.get("rate"),
                "burst": opts.get("burst"),
                "lat": opts.get("lat"),
            }
        )
    return sorted(out, key=lambda q: str(q["kind"]))


def _redirect_targets(dev: str) -> list[str]:
    text = sh("tc", "filter", "show", "dev", dev, "parent", "ffff:")
    return sorted(
        {
            line.split("device ")[1].split(")")[0]
            for line in text.splitlines()
            if "Redirect to device" in line
        }
    )


CASES: dict[str, dict[str, Any]] = {
    "capability-both-ways": {
        "capabilities": {"bandwidth": True},
        "runtimeConfig": {
            "bandwidth": {
                "ingressRate": 1000000,
                "ingressBurst": 20000,
                "egressRate": 2000000,
                "egressBurst": 30000,
            }
        },
    },
    "static-ingress-only": {"ingressRate": 8000000, "ingressBurst": 80000},
    "static-egress-only": {"egressRate": 500000, "egressBurst": 16000},
}


def _exercise(plugin_dir: str, ours: str, extra: dict[str, Any], tmp: Path) -> dict[str, Any]:
    with support.resources() as res:
        ns = res.new_netns()
        ifb = ifb_name(NETWORK, CID)
        res.links.append(ifb)
        ptp = {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "ptp",
            "ipam": {
                "type": "host-local",
                "subnet": "10.202.81.0/24",
                "dataDir": str(tmp / f"ipam-{abs(hash(plugin_dir))}"),
            },
        }
        prev = run_plugin(ours, "ptp", "ADD", ptp, netns=netns_path(ns), container_id=CID).result
        veth = prev["interfaces"][0]["name"]
        conf = {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "bandwidth",
            "prevResult": prev,
            **extra,
        }
        add = run_plugin(
            plugin_dir, "bandwidth", "ADD", conf, netns=netns_path(ns), container_id=CID
        )
        result = add.result
        has_ifb = any(link["ifname"] == ifb for link in ip_json("link", "show"))
        snap: dict[str, Any] = {
            "result": support.normalise_result(result, "", veth),
            "veth_qdiscs": _qdiscs(veth),
            "redirects": _redirect_targets(veth),
            "ifb_qdiscs": _qdiscs(ifb) if has_ifb else None,
        }
        check = run_plugin(
            plugin_dir,
            "bandwidth",
            "CHECK",
            dict(conf, prevResult=result),
            netns=netns_path(ns),
            container_id=CID,
        )
        snap["check"] = check.code
        for _ in range(2):
            delete = run_plugin(
                plugin_dir, "bandwidth", "DEL", conf, netns=netns_path(ns), container_id=CID
            )
            assert delete.code == 0
        snap["ifb_after_del"] = any(link["ifname"] == ifb for link in ip_json("link", "show"))
        assert run_plugin(ours, "ptp", "DEL", ptp, netns=netns_path(ns), container_id=CID).code == 0
        return snap


@pytest.mark.parametrize("case", sorted(CASES))
def test_bandwidth_matches_reference(case: str, ours: str, tmp_path: Path) -> None:
    mine = _exercise(ours, ours, CASES[case], tmp_path)
    theirs = _exercise(REF_DIR, ours, CASES[case], tmp_path)
    assert mine == theirs
    assert mine["ifb_after_del"] is False


@pytest.mark.parametrize(
    "bad",
    [{"ingressRate": 1000}, {"egressBurst": 1000}, {"ingressRate": -1, "ingressBurst": 5}],
)
def test_bandwidth_rejects_half_configs(bad: dict[str, Any], ours: str) -> None:
    conf = {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "bandwidth",
        "prevResult": {"cniVersion": "1.0.0"},
        **bad,
    }
    with support.resources() as res:
        ns = res.new_netns()
        assert run_plugin(ours, "bandwidth", "ADD", conf, netns=netns_path(ns)).error["code"] == 7
