"""Differential tests for host-local against the reference binary: the same sequence of calls
on the same config gives the same results and the same state files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cnilib.api import CNIConfig
from cnilib.conf import parse_conf_list
from cnilib.types import RuntimeConf
from tests.integration import test_netplugins_support as support
from tests.integration.test_netplugins_support import REF_DIR, run_plugin

pytestmark = [pytest.mark.integration, support.needs_reference]

NETNS = "/run/netns/npt-unused"  # host-local never enters it; the reference wants it set


CASES: dict[str, dict[str, Any]] = {
    "subnet-shorthand": {"subnet": "10.202.90.0/29"},
    "range-start-end-gateway": {
        "ranges": [
            [
                {
                    "subnet": "10.202.91.0/24",
                    "rangeStart": "10.202.91.10",
                    "rangeEnd": "10.202.91.13",
                    "gateway": "10.202.91.11",
                }
            ]
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.203.0.0/16", "gw": "10.202.91.1"}],
    },
    "two-ranges-one-set": {
        "ranges": [[{"subnet": "10.202.92.0/30"}, {"subnet": "10.202.93.0/30"}]],
    },
    "dual-stack": {
        "ranges": [
            [{"subnet": "10.202.94.0/24"}],
            [
                {
                    "subnet": "fd02:202::/64",
                    "rangeStart": "fd02:202::100",
                    "rangeEnd": "fd02:202::103",
                }
            ],
        ],
    },
}


def _sequence(plugin_dir: str, ipam: dict[str, Any], data_dir: Path, version: str) -> list[Any]:
    conf = {
        "cniVersion": version,
        "name": "npt-hl",
        "ipam": dict(ipam, type="host-local", dataDir=str(data_dir)),
    }
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("ADD", "c1", {}),
        ("ADD", "c2", {}),
        ("DEL", "c1", {}),
        ("ADD", "c3", {}),  # round robin: after the last reserved, not c1's freed address
        ("ADD", "c4", {}),
        ("ADD", "c5", {}),
        ("DEL", "c9", {}),  # unknown container: DEL still succeeds
        ("CHECK", "c2", {}),
        ("CHECK", "c1", {}),
    ]
    out: list[Any] = []
    for command, cid, extra in steps:
        if command == "CHECK" and version == "0.3.1":
            continue
        run = run_plugin(
            plugin_dir, "host-local", command, dict(conf, **extra), netns=NETNS, container_id=cid
        )
        if run.code == 0:
            result = run.result
            for ip in result.get("ips", []):
                ip.pop("version", None)
            result.pop("dns", None)
            out.append((command, cid, 0, result))
        else:
            out.append((command, cid, run.error["code"]))
    state = data_dir / "npt-hl"
    out.append(sorted((p.name, p.read_bytes()) for p in state.iterdir() if p.name != "lock"))
    return out


@pytest.mark.parametrize("version", ["0.3.1", "1.0.0"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_host_local_matches_reference(case: str, version: str, ours: str, tmp_path: Path) -> None:
    mine = _sequence(ours, CASES[case], tmp_path / "ours", version)
    theirs = _sequence(REF_DIR, CASES[case], tmp_path / "ref", version)
    assert mine == theirs


@pytest.mark.parametrize("where", ["args", "runtimeConfig", "CNI_ARGS"])
def test_requested_ip_matches_reference(where: str, ours: str, tmp_path: Path) -> None:
    outcomes = []
    for plugin_dir in (ours, REF_DIR):
        conf: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "name": "npt-hl",
            "ipam": {
                "type": "host-local",
                "subnet": "10.202.95.0/24",
                "dataDir": str(tmp_path / plugin_dir.replace("/", "_")),
            },
        }
        cni_args = ""
        if where == "args":
            conf["args"] = {"cni": {"ips": ["10.202.95.50"]}}
        elif where == "runtimeConfig":
            conf["capabilities"] = {"ips": True}
            conf["runtimeConfig"] = {"ips": ["10.202.95.50/24"]}
        else:
            cni_args = "IgnoreUnknown=1;IP=10.202.95.50"
        first = run_plugin(
            plugin_dir, "host-local", "ADD", conf, netns=NETNS, container_id="a", cni_args=cni_args
        )
        again = run_plugin(
            plugin_dir, "host-local", "ADD", conf, netns=NETNS, container_id="b", cni_args=cni_args
        )
        outcomes.append((first.result["ips"], again.code != 0))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0][0]["address"] == "10.202.95.50/24"


@pytest.mark.parametrize("where", ["args", "runtimeConfig", "CNI_ARGS"])
@pytest.mark.parametrize("gateway", ["", "10.202.96.7"])
def test_requested_gateway_refused_like_reference(
    where: str, gateway: str, ours: str, tmp_path: Path
) -> None:
    """Asking for the gateway (default or configured) fails, naming it, and reserves nothing."""
    wanted = gateway or "10.202.96.1"
    outcomes = []
    for plugin_dir in (ours, REF_DIR):
        data_dir = tmp_path / plugin_dir.replace("/", "_")
        ipam: dict[str, Any] = {
            "type": "host-local",
            "subnet": "10.202.96.0/24",
            "dataDir": str(data_dir),
        }
        if gateway:
            ipam["gateway"] = gateway
        conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "npt-hl", "ipam": ipam}
        cni_args = ""
        if where == "args":
            conf["args"] = {"cni": {"ips": [wanted]}}
        elif where == "runtimeConfig":
            conf["capabilities"] = {"ips": True}
            conf["runtimeConfig"] = {"ips": [f"{wanted}/24"]}
        else:
            cni_args = f"IgnoreUnknown=1;IP={wanted}"
        run = run_plugin(
            plugin_dir, "host-local", "ADD", conf, netns=NETNS, container_id="a", cni_args=cni_args
        )
        error = run.error
        assert f"requested ip {wanted} is subnet's gateway" in error["msg"]
        outcomes.append((error["code"], error["msg"], support.state_files(data_dir, "npt-hl")))
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0][2]) <= {"lock"}


POD_CIDR_RANGES = [[{"subnet": "10.202.97.0/28"}]]


@pytest.mark.parametrize(
    "static",
    [
        {},
        {"subnet": "10.202.98.0/28"},
        {"ranges": [[{"subnet": "10.202.98.0/28"}], [{"subnet": "fd02:202::/64"}]]},
        {"subnet": "10.202.98.0/28", "ranges": [[{"subnet": "10.202.99.0/28"}]]},
    ],
    ids=["ipRanges-only", "with-shorthand", "with-ranges", "with-both"],
)
def test_runtime_ip_ranges_match_reference(
    static: dict[str, Any], ours: str, tmp_path: Path
) -> None:
    """The ``ipRanges`` capability as the shim sends it (the node's pod CIDR): used, and
    combined with static ranges exactly as the reference combines them."""
    outcomes = []
    for plugin_dir in (ours, REF_DIR):
        data_dir = tmp_path / plugin_dir.replace("/", "_")
        conf: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "name": "npt-hl",
            "capabilities": {"ipRanges": True},
            "runtimeConfig": {"ipRanges": POD_CIDR_RANGES},
            "ipam": dict(static, type="host-local", dataDir=str(data_dir)),
        }
        runs = [
            run_plugin(plugin_dir, "host-local", "ADD", conf, netns=NETNS, container_id=cid)
            for cid in ("a", "b")
        ]
        ips = [r.result["ips"] for r in runs]
        outcomes.append((ips, support.state_files(data_dir, "npt-hl")))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0][0][0]["address"] == "10.202.97.2/28"


def test_runtime_ip_ranges_through_cnilib(ours: str, tmp_path: Path) -> None:
    """A list whose host-local relies on ``ipRanges`` alone, run as the shim runs it."""
    conflist = {
        "cniVersion": "1.0.0",
        "name": "npt-hl",
        "plugins": [
            {
                "type": "host-local",
                "capabilities": {"ipRanges": True},
                "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam")},
            }
        ],
    }
    net = parse_conf_list(json.dumps(conflist).encode())
    cni = CNIConfig([ours], str(tmp_path / "cache"))
    rt = RuntimeConf("npt-c1", NETNS, "eth0", capability_args={"ipRanges": POD_CIDR_RANGES})
    result = cni.add_network_list(net, rt)
    assert [str(ip.address) for ip in result.ips] == ["10.202.97.2/28"]
    cni.del_network_list(net, rt)
    assert sorted(os.listdir(tmp_path / "ipam" / "npt-hl")) == ["last_reserved_ip.0", "lock"]


@pytest.mark.parametrize(
    "ipam",
    [
        {"ranges": [[{"subnet": "10.202.97.0/24"}], [{"subnet": "10.202.97.0/25"}]]},
        {"ranges": [[{"subnet": "10.202.97.0/24"}, {"subnet": "fd02:202::/64"}]]},
        {"ranges": [[{"subnet": "10.202.97.0/24"}], [{"subnet": "fd02:202::/64"}]]},
    ],
    ids=["overlap-across-sets", "mixed-families-in-a-set", "dual-stack-ok"],
)
def test_range_set_validation_matches_reference(
    ipam: dict[str, Any], ours: str, tmp_path: Path
) -> None:
    """Refused (and nothing reserved) exactly when the reference refuses."""
    outcomes = []
    for plugin_dir in (ours, REF_DIR):
        data_dir = tmp_path / plugin_dir.replace("/", "_")
        conf = {
            "cniVersion": "1.0.0",
            "name": "npt-hl",
            "ipam": dict(ipam, type="host-local", dataDir=str(data_dir)),
        }
        run = run_plugin(plugin_dir, "host-local", "ADD", conf, netns=NETNS, container_id="a")
        ips = run.result["ips"] if run.code == 0 else None
        outcomes.append((run.code == 0, ips, set(support.state_files(data_dir, "npt-hl"))))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize(
    ("container_id", "ifname"),
    [("../escape", "eth0"), ("_x", "eth0"), ("c1", "a/b"), ("c1", ".."), ("c1", "x" * 16)],
)
@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_bad_container_id_or_ifname_refused_like_reference(
    container_id: str, ifname: str, command: str, ours: str, tmp_path: Path
) -> None:
    outcomes = []
    for plugin_dir in (ours, REF_DIR):
        data_dir = tmp_path / plugin_dir.replace("/", "_") / "networks"
        conf = {
            "cniVersion": "1.0.0",
            "name": "npt-hl",
            "ipam": {"type": "host-local", "subnet": "10.202.97.0/24", "dataDir": str(data_dir)},
        }
        run = run_plugin(
            plugin_dir,
            "host-local",
            command,
            conf,
            netns=NETNS,
            container_id=container_id,
            ifname=ifname,
        )
        error = run.error
        made = sorted(str(p.relative_to(data_dir.parent)) for p in data_dir.parent.rglob("*"))
        outcomes.append((error["code"], error["msg"], made))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == 4
