"""CHECK of bridge and ptp against the reference: a container whose routes or MAC no longer
match the cached result fails CHECK with both, an untouched one passes with both."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration import test_netplugins_support as support
from tests.integration.test_netplugins_support import REF_DIR, netns_path, run_plugin, sh

pytestmark = [pytest.mark.integration, support.needs_root, support.needs_reference]

CID = "npt-check-0001"


def _conf(plugin: str, data_dir: Path) -> dict[str, Any]:
    if plugin == "bridge":
        return {
            "cniVersion": "1.0.0",
            "name": "npt-chk-bridge",
            "type": "bridge",
            "bridge": "nptchk0",
            "isDefaultGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.202.30.0/24", "dataDir": str(data_dir)},
        }
    return {
        "cniVersion": "1.0.0",
        "name": "npt-chk-ptp",
        "type": "ptp",
        "ipam": {
            "type": "host-local",
            "subnet": "10.202.31.0/24",
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.202.31.1"}],
            "dataDir": str(data_dir),
        },
    }


TAMPER = {
    "none": [],
    "default-route-gone": ["ip", "route", "del", "default"],
    "mac-changed": ["ip", "link", "set", "eth0", "address", "02:42:0a:ca:1e:99"],
}


def _check_after(plugin_dir: str, plugin: str, tamper: str, tmp: Path) -> int:
    conf = _conf(plugin, tmp / os.path.basename(plugin_dir))
    with support.resources() as res:
        res.bridges.append("nptchk0")
        ns = res.new_netns()
        path = netns_path(ns)
        result = run_plugin(plugin_dir, plugin, "ADD", conf, netns=path, container_id=CID).result
        try:
            if TAMPER[tamper]:
                sh(*TAMPER[tamper], netns=ns)
            check = run_plugin(
                plugin_dir,
                plugin,
                "CHECK",
                dict(conf, prevResult=result),
                netns=path,
                container_id=CID,
            )
        finally:
            run_plugin(plugin_dir, plugin, "DEL", conf, netns=path, container_id=CID)
    return check.code


@pytest.mark.parametrize("tamper", sorted(TAMPER))
@pytest.mark.parametrize("plugin", ["bridge", "ptp"])
def test_check_fails_like_reference_when_container_changed(
    plugin: str, tamper: str, ours: str, tmp_path: Path
) -> None:
    mine = _check_after(ours, plugin, tamper, tmp_path)
    theirs = _check_after(REF_DIR, plugin, tamper, tmp_path)
    assert (mine == 0, theirs == 0) == (tamper == "none", tamper == "none")
