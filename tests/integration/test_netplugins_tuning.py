"""Differential tests for tuning against the reference binary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration import test_netplugins_support as support
from tests.integration.test_netplugins_support import REF_DIR, ip_json, netns_path, run_plugin, sh

pytestmark = [pytest.mark.integration, support.needs_root, support.needs_reference]


def _link_state(ns: str) -> dict[str, Any]:
    (link,) = ip_json("-d", "link", "show", "dev", "eth0", netns=ns)
    return {
        "mac": link["address"],
        "mtu": link["mtu"],
        "promisc": "PROMISC" in link["flags"],
        "allmulti": "ALLMULTI" in link["flags"],
    }


CASES: dict[str, dict[str, Any]] = {
    "everything": {
        "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1", "net.core.somaxconn": "517"},
        "mtu": 1300,
        "promisc": True,
        "allmulti": True,
        "mac": "c2:11:22:33:44:55",
    },
    "mac-capability": {
        "capabilities": {"mac": True},
        "runtimeConfig": {"mac": "c2:11:22:33:44:66"},
    },
    "sysctl-only": {"sysctl": {"net.ipv6.conf.eth0.accept_dad": "0"}},
}


def _exercise(plugin_dir: str, extra: dict[str, Any], tmp: Path) -> dict[str, Any]:
    with support.resources() as res:
        ns = res.new_netns()
        sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1", netns=ns)
        before = _link_state(ns)
        data_dir = tmp / f"tuning-{abs(hash(plugin_dir))}"
        prev = {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": before["mac"], "sandbox": netns_path(ns)}],
            "ips": [{"address": "10.202.70.2/24", "interface": 0}],
        }
        conf = {
            "cniVersion": "1.0.0",
            "name": "npt-tune",
            "type": "tuning",
            "dataDir": str(data_dir),
            "prevResult": prev,
            **extra,
        }
        result = run_plugin(plugin_dir, "tuning", "ADD", conf, netns=netns_path(ns)).result
        after_add = _link_state(ns)
        sysctls = {k: sh("sysctl", "-n", k, netns=ns).strip() for k in conf.get("sysctl", {})}
        # Our owner records (for GC) live in .owners/, which the reference does not have.
        saved = {p.name: json.loads(p.read_text()) for p in data_dir.glob("*") if p.is_file()}
        check = run_plugin(
            plugin_dir, "tuning", "CHECK", dict(conf, prevResult=result), netns=netns_path(ns)
        )
        for _ in range(2):
            assert run_plugin(plugin_dir, "tuning", "DEL", conf, netns=netns_path(ns)).code == 0
        after_del = _link_state(ns)
        for key in ("mac",):
            for state in (after_add, after_del):
                state[f"{key}_is_original"] = state.pop(key) == before[key]
        for state in saved.values():
            if "mac" in state:
                state["mac"] = state["mac"] == before["mac"]
        return {
            "result": support.normalise_result(result, "", ""),
            "result_mac": (
                "original"
                if result["interfaces"][0]["mac"] == before["mac"]
                else result["interfaces"][0]["mac"]
            ),
            "after_add": after_add,
            "sysctls": sysctls,
            "saved": saved,
            "check": check.code,
            "after_del": after_del,
            "left": sorted(p.name for p in data_dir.glob("*") if p.name != ".owners")
            if data_dir.exists()
            else [],
            "owners_left": sorted(p.name for p in data_dir.glob(".owners/*")),
        }


@pytest.mark.parametrize("case", sorted(CASES))
def test_tuning_matches_reference(case: str, ours: str, tmp_path: Path) -> None:
    mine = _exercise(ours, CASES[case], tmp_path)
    theirs = _exercise(REF_DIR, CASES[case], tmp_path)
    assert mine == theirs
    assert mine["after_del"]["mac_is_original"] and mine["left"] == []


def test_tuning_refuses_non_network_sysctls(ours: str) -> None:
    conf = {
        "cniVersion": "1.0.0",
        "name": "npt-tune",
        "type": "tuning",
        "sysctl": {"kernel.panic": "1"},
        "prevResult": {"cniVersion": "1.0.0"},
    }
    with support.resources() as res:
        ns = res.new_netns()
        err = run_plugin(ours, "tuning", "ADD", conf, netns=netns_path(ns)).error
    assert "invalid net sysctl key" in err["msg"]
