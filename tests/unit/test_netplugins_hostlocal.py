"""host-local: configuration parsing and allocation order (pure; state in tmp dirs)."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import pytest

from netplugins import errors, host_local, skel
from netplugins.ipam_store import Store


def _args(
    ipam: dict[str, Any],
    container_id: str = "c1",
    ifname: str = "eth0",
    extra: dict[str, Any] | None = None,
) -> skel.CmdArgs:
    netconf = {"cniVersion": "1.0.0", "name": "net1", "ipam": ipam, **(extra or {})}
    return skel.CmdArgs(
        command="ADD",
        container_id=container_id,
        netns="/x",
        ifname=ifname,
        args="",
        path=(),
        stdin=json.dumps(netconf).encode(),
        netconf=netconf,
    )


def _ips(result: dict[str, Any]) -> list[str]:
    return [ip["address"] for ip in result["ips"]]


@pytest.mark.parametrize(
    ("ipam", "start", "end", "gateway"),
    [
        ({"subnet": "10.202.1.0/24"}, "10.202.1.1", "10.202.1.254", "10.202.1.1"),
        (
            {
                "subnet": "10.202.1.0/24",
                "rangeStart": "10.202.1.10",
                "rangeEnd": "10.202.1.20",
                "gateway": "10.202.1.254",
            },
            "10.202.1.10",
            "10.202.1.20",
            "10.202.1.254",
        ),
        (
            {"ranges": [[{"subnet": "fd02:202::/64"}]]},
            "fd02:202::1",
            "fd02:202::ffff:ffff:ffff:ffff",
            "fd02:202::1",
        ),
    ],
)
def test_range_defaults(
    ipam: dict[str, Any], start: str, end: str, gateway: str, tmp_path: Path
) -> None:
    conf = host_local.load_conf(_args(dict(ipam, dataDir=str(tmp_path))))
    (r,) = conf.range_sets[0]
    assert (str(r.start), str(r.end), str(r.gateway)) == (start, end, gateway)


@pytest.mark.parametrize(
    "ipam",
    [
        {},
        {"subnet": "10.202.1.0/31"},
        {"subnet": "10.202.1.0/24", "rangeStart": "10.202.2.1"},
        {"subnet": "10.202.1.0/24", "rangeStart": "10.202.1.9", "rangeEnd": "10.202.1.8"},
        {"ranges": [[{"subnet": "10.202.1.0/24"}, {"subnet": "10.202.1.0/25"}]]},
        {"ranges": [[]]},
    ],
)
def test_invalid_configs_are_error_7(ipam: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError):
        host_local.load_conf(_args(dict(ipam, dataDir=str(tmp_path))))


def test_round_robin_skips_gateway_and_wraps(tmp_path: Path) -> None:
    ipam = {"subnet": "10.202.1.0/29", "dataDir": str(tmp_path)}  # .1 gw, .2-.6 usable
    got = [_ips(host_local.cmd_add(_args(ipam, f"c{i}")))[0] for i in range(5)]
    assert got == [f"10.202.1.{n}/29" for n in (2, 3, 4, 5, 6)]
    with pytest.raises(errors.AddressExhausted):
        host_local.cmd_add(_args(ipam, "c9"))
    host_local.cmd_del(_args(ipam, "c1"))  # frees .3
    host_local.cmd_del(_args(ipam, "c0"))  # frees .2
    # Round robin continues after the last reserved (.6): wraps to .2 first.
    assert _ips(host_local.cmd_add(_args(ipam, "c10"))) == ["10.202.1.2/29"]
    assert _ips(host_local.cmd_add(_args(ipam, "c11"))) == ["10.202.1.3/29"]


def test_state_files_use_reference_layout(tmp_path: Path) -> None:
    ipam = {
        "ranges": [[{"subnet": "10.202.1.0/24"}], [{"subnet": "fd02:202::/64"}]],
        "dataDir": str(tmp_path),
    }
    result = host_local.cmd_add(_args(ipam, "abc", "eth1"))
    assert _ips(result) == ["10.202.1.2/24", "fd02:202::2/64"]
    net = tmp_path / "net1"
    assert (net / "10.202.1.2").read_bytes() == b"abc\r\neth1"
    assert (net / "fd02:202::2").read_bytes() == b"abc\r\neth1"
    assert (net / "last_reserved_ip.0").read_text() == "10.202.1.2"
    assert (net / "last_reserved_ip.1").read_text() == "fd02:202::2"
    assert (net / "lock").exists()


@pytest.mark.parametrize("where", ["args", "runtimeConfig", "CNI_ARGS"])
def test_requested_ip(where: str, tmp_path: Path) -> None:
    ipam = {"subnet": "10.202.1.0/24", "dataDir": str(tmp_path)}
    extra: dict[str, Any] = {}
    if where == "args":
        extra = {"args": {"cni": {"ips": ["10.202.1.77"]}}}
    elif where == "runtimeConfig":
        extra = {"runtimeConfig": {"ips": ["10.202.1.77/24"]}}
    args = _args(ipam, extra=extra)
    if where == "CNI_ARGS":
        args = skel.CmdArgs(**{**args.__dict__, "args": "IgnoreUnknown=1;IP=10.202.1.77"})
    assert _ips(host_local.cmd_add(args)) == ["10.202.1.77/24"]
    with pytest.raises(errors.NetPluginError, match="not available"):
        host_local.cmd_add(skel.CmdArgs(**{**args.__dict__, "container_id": "other"}))


def test_failed_dual_stack_allocation_leaks_nothing(tmp_path: Path) -> None:
    ipam = {
        "ranges": [
            [{"subnet": "10.202.1.0/24"}],
            [{"subnet": "fd02:202::/64", "rangeStart": "fd02:202::5", "rangeEnd": "fd02:202::5"}],
        ],
        "dataDir": str(tmp_path),
    }
    host_local.cmd_add(_args(ipam, "c1"))
    with pytest.raises(errors.AddressExhausted):
        host_local.cmd_add(_args(ipam, "c2"))
    held = {(r.container_id, str(r.ip)) for r in Store(str(tmp_path), "net1").reservations()}
    assert held == {("c1", "10.202.1.2"), ("c1", "fd02:202::5")}


def test_duplicate_add_is_refused_without_releasing(tmp_path: Path) -> None:
    ipam = {"subnet": "10.202.1.0/24", "dataDir": str(tmp_path)}
    host_local.cmd_add(_args(ipam, "c1"))
    with pytest.raises(errors.NetPluginError, match="duplicate"):
        host_local.cmd_add(_args(ipam, "c1"))
    assert len(Store(str(tmp_path), "net1").held_by("c1", "eth0")) == 1


def test_del_releases_exactly_that_container_and_interface(tmp_path: Path) -> None:
    ipam = {"subnet": "10.202.1.0/24", "dataDir": str(tmp_path)}
    host_local.cmd_add(_args(ipam, "c1", "eth0"))
    host_local.cmd_add(_args(ipam, "c1", "eth1"))
    host_local.cmd_add(_args(ipam, "c2", "eth0"))
    host_local.cmd_del(_args(ipam, "c1", "eth0"))
    host_local.cmd_del(_args(ipam, "c1", "eth0"))  # repeatable
    held = {(r.container_id, r.ifname) for r in Store(str(tmp_path), "net1").reservations()}
    assert held == {("c1", "eth1"), ("c2", "eth0")}


def test_legacy_state_file_with_only_container_id_is_released(tmp_path: Path) -> None:
    ipam = {"subnet": "10.202.1.0/24", "dataDir": str(tmp_path)}
    os.makedirs(tmp_path / "net1")
    (tmp_path / "net1" / "10.202.1.9").write_text("old-id")
    host_local.cmd_del(_args(ipam, "old-id"))
    assert not (tmp_path / "net1" / "10.202.1.9").exists()


def test_gc_keeps_only_valid_attachments(tmp_path: Path) -> None:
    ipam = {"subnet": "10.202.1.0/24", "dataDir": str(tmp_path)}
    for cid in ("keep", "drop1", "drop2"):
        host_local.cmd_add(_args(ipam, cid))
    gc_args = _args(
        ipam,
        "",
        extra={
            "cni.dev/valid-attachments": [
                {"containerID": "keep", "ifname": "eth0"},
                {"containerID": "drop1", "ifname": "eth9"},
            ]
        },
    )
    host_local.cmd_gc(gc_args)
    held = {r.container_id for r in Store(str(tmp_path), "net1").reservations()}
    assert held == {"keep"}


def test_check_fails_without_reservation(tmp_path: Path) -> None:
    ipam = {"subnet": "10.202.1.0/24", "dataDir": str(tmp_path)}
    with pytest.raises(errors.CheckFailed):
        host_local.cmd_check(_args(ipam, "nobody"))
    host_local.cmd_add(_args(ipam, "c1"))
    host_local.cmd_check(_args(ipam, "c1"))


def test_candidates_cover_every_address_once_across_ranges() -> None:
    ranges = [
        host_local._parse_range({"subnet": "10.202.1.0/29"}),
        host_local._parse_range({"subnet": "10.202.2.0/29"}),
    ]
    last = ipaddress.ip_address("10.202.1.4")
    seen = [str(ip) for _, ip in host_local._candidates(ranges, last)]
    assert seen[:3] == ["10.202.1.5", "10.202.1.6", "10.202.2.2"]
    assert len(seen) == len(set(seen)) == 10  # 2x(.2-.6), gateways .1 skipped


POD_CIDR = [[{"subnet": "10.202.7.0/24"}]]


def test_runtime_ip_ranges_alone_are_allocated_from(tmp_path: Path) -> None:
    """The ``ipRanges`` capability (the node's pod CIDR) is enough: no static ranges needed."""
    ipam = {"dataDir": str(tmp_path)}
    args = _args(ipam, extra={"runtimeConfig": {"ipRanges": POD_CIDR}})
    assert _ips(host_local.cmd_add(args)) == ["10.202.7.2/24"]


def test_runtime_ip_ranges_come_before_shorthand_and_ranges(tmp_path: Path) -> None:
    """The reference prepends ipRanges, then the ``subnet`` shorthand, then ``ranges``."""
    ipam = {
        "dataDir": str(tmp_path),
        "subnet": "10.202.8.0/24",
        "ranges": [[{"subnet": "fd02:202::/64"}]],
    }
    conf = host_local.load_conf(_args(ipam, extra={"runtimeConfig": {"ipRanges": POD_CIDR}}))
    assert [str(s[0].subnet) for s in conf.range_sets] == [
        "10.202.7.0/24",
        "10.202.8.0/24",
        "fd02:202::/64",
    ]


@pytest.mark.parametrize("ip_ranges", [[], None])
def test_empty_runtime_ip_ranges_change_nothing(ip_ranges: Any, tmp_path: Path) -> None:
    ipam = {"dataDir": str(tmp_path), "subnet": "10.202.8.0/24"}
    conf = host_local.load_conf(_args(ipam, extra={"runtimeConfig": {"ipRanges": ip_ranges}}))
    assert [str(s[0].subnet) for s in conf.range_sets] == ["10.202.8.0/24"]


@pytest.mark.parametrize(
    ("ipam", "why"),
    [
        (
            {"ranges": [[{"subnet": "10.202.1.0/24"}], [{"subnet": "10.202.1.0/25"}]]},
            "range set 0 overlaps with 1",
        ),
        (
            {"subnet": "10.202.1.0/24", "ranges": [[{"subnet": "10.202.1.128/25"}]]},
            "range set 0 overlaps with 1",
        ),
        (
            {"ranges": [[{"subnet": "10.202.1.0/24"}, {"subnet": "fd02:202::/64"}]]},
            "invalid range set 0: mixed address families",
        ),
    ],
    ids=["across-sets", "shorthand-and-ranges", "mixed-families"],
)
def test_range_sets_rejected_like_reference(ipam: dict[str, Any], why: str, tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=why):
        host_local.load_conf(_args(dict(ipam, dataDir=str(tmp_path))))


def test_pod_cidr_overlapping_a_static_range_is_rejected(tmp_path: Path) -> None:
    ipam = {"dataDir": str(tmp_path), "ranges": [[{"subnet": "10.202.7.0/25"}]]}
    with pytest.raises(errors.ConfigError, match="range set 0 overlaps with 1"):
        host_local.load_conf(_args(ipam, extra={"runtimeConfig": {"ipRanges": POD_CIDR}}))
