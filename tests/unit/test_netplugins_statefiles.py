"""State paths stay inside their data dir, even when a caller bypasses the skeleton."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from cnilib.atomic import is_temp_file
from netplugins import errors, flannel, host_local, skel, tuning
from netplugins.ipam_store import Store
from netplugins.statefiles import state_path

ESCAPES = ["../escape", "..", ".", "", "a/../../escape", "/abs/escape"]


@pytest.mark.parametrize("name", ESCAPES)
def test_state_path_refuses_anything_but_one_component(name: str, tmp_path: Path) -> None:
    with pytest.raises(errors.BadEnvironment):
        state_path(str(tmp_path / "data"), name)


def test_state_path_of_a_plain_name(tmp_path: Path) -> None:
    assert state_path(str(tmp_path), "c1_eth0.100.json") == str(tmp_path / "c1_eth0.100.json")


def _args(netconf: dict[str, Any], container_id: str, ifname: str = "eth0") -> skel.CmdArgs:
    return skel.CmdArgs(
        command="DEL",
        container_id=container_id,
        netns="",
        ifname=ifname,
        args="",
        path=(),
        stdin=json.dumps(netconf).encode(),
        netconf=netconf,
    )


def _env(command: str, container_id: str, ifname: str = "eth0") -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": "/run/netns/npt-unused",
        "CNI_IFNAME": ifname,
        "CNI_PATH": "",
    }


def test_flannel_add_with_escaping_container_id_writes_nothing(tmp_path: Path) -> None:
    """The regression: ``CNI_CONTAINERID=../escape`` saved the delegate beside dataDir."""
    (tmp_path / "subnet.env").write_text(
        "FLANNEL_NETWORK=10.202.0.0/16\nFLANNEL_SUBNET=10.202.5.1/24\n"
        "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
    )
    data_dir = tmp_path / "data" / "flannel"
    conf = {
        "cniVersion": "1.0.0",
        "name": "net1",
        "type": "flannel",
        "subnetFile": str(tmp_path / "subnet.env"),
        "dataDir": str(data_dir),
    }
    code, out, _ = skel.run(flannel.PLUGIN, _env("ADD", "../escape"), json.dumps(conf).encode())
    assert (code, json.loads(out)["code"]) == (1, errors.INVALID_ENVIRONMENT)
    assert not (tmp_path / "data" / "escape").exists()
    with pytest.raises(errors.BadEnvironment):  # and directly, without the skeleton
        flannel.cmd_add(_args(conf, "../escape"))
    assert not (tmp_path / "data" / "escape").exists()


def test_flannel_del_with_escaping_container_id_removes_nothing(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text(json.dumps({"type": "bridge", "name": "net1"}))
    conf = {"cniVersion": "1.0.0", "name": "net1", "dataDir": str(tmp_path / "flannel")}
    code, _, _ = skel.run(flannel.PLUGIN, _env("DEL", "../victim"), json.dumps(conf).encode())
    assert code == 1
    with pytest.raises(errors.BadEnvironment):
        flannel.cmd_del(_args(conf, "../victim"))
    assert victim.exists()


@pytest.mark.parametrize(("container_id", "ifname"), [("../victim", "eth0"), ("c1", "../x")])
def test_tuning_del_with_escaping_names_removes_nothing(
    container_id: str, ifname: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "tuning"
    data_dir.mkdir()
    victim = tmp_path / "victim_eth0.json"
    victim.write_text("{}")
    conf = {"cniVersion": "1.0.0", "name": "net1", "dataDir": str(data_dir)}
    env = _env("DEL", container_id, ifname)
    code, _, _ = skel.run(tuning.PLUGIN, env, json.dumps(conf).encode())
    assert code == 1
    with pytest.raises(errors.BadEnvironment):
        tuning.cmd_del(_args(conf, container_id, ifname))
    assert victim.exists()


@pytest.mark.parametrize("network", ["..", "../other", "a/b"])
def test_host_local_network_name_cannot_leave_data_dir(network: str, tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError):
        Store(str(tmp_path / "networks"), network)
    ipam = {"subnet": "10.202.5.0/24", "dataDir": str(tmp_path / "networks")}
    conf = {"cniVersion": "1.0.0", "name": network, "ipam": ipam}
    with pytest.raises(errors.ConfigError):
        host_local.cmd_add(_args(conf, "c1"))
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["networks"])


def _leftovers(directory: Path) -> tuple[Path, Path]:
    """A temp file a killed save left an hour ago, and one of a save in progress now."""
    directory.mkdir(parents=True, exist_ok=True)
    stale, fresh = directory / ".tmp-killed1", directory / ".tmp-inflight"
    for path in (stale, fresh):
        path.write_text("{")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    return stale, fresh


def _gc_args(netconf: dict[str, Any]) -> skel.CmdArgs:
    netconf = dict(netconf, cniVersion="1.1.0")
    netconf["cni.dev/valid-attachments"] = []
    return skel.CmdArgs(
        command="GC",
        container_id="",
        netns="",
        ifname="",
        args="",
        path=(),
        stdin=json.dumps(netconf).encode(),
        netconf=netconf,
    )


def test_tuning_gc_sweeps_stale_temp_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "tuning"
    stale, fresh = _leftovers(data_dir)
    owner_stale, owner_fresh = _leftovers(data_dir / tuning.OWNERS_DIR)
    (data_dir / "c9_eth0.json").write_text("{}")  # the reference's state: never touched
    tuning.cmd_gc(_gc_args({"name": "net1", "dataDir": str(data_dir)}))
    assert not stale.exists() and not owner_stale.exists()
    assert fresh.exists() and owner_fresh.exists() and (data_dir / "c9_eth0.json").exists()


def test_flannel_gc_sweeps_stale_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "subnet.env").write_text(
        "FLANNEL_SUBNET=10.202.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
    )
    data_dir = tmp_path / "flannel"
    stale, fresh = _leftovers(data_dir)
    delegated: list[str] = []
    monkeypatch.setattr(
        "netplugins.delegation.delegate", lambda command, *rest: delegated.append(command)
    )
    conf = {"name": "net1", "subnetFile": str(tmp_path / "subnet.env"), "dataDir": str(data_dir)}
    flannel.cmd_gc(_gc_args(conf))
    assert not stale.exists() and fresh.exists()
    assert delegated == ["GC"]  # the temp files were not taken for attachments


def test_host_local_gc_sweeps_every_temp_file_under_its_lock(tmp_path: Path) -> None:
    ipam = {"subnet": "10.202.5.0/24", "dataDir": str(tmp_path)}
    conf = {"name": "net1", "ipam": ipam}
    host_local.cmd_add(_args(dict(conf, cniVersion="1.0.0"), "c1"))
    stale, fresh = _leftovers(tmp_path / "net1")
    host_local.cmd_gc(_gc_args(conf))
    assert not stale.exists() and not fresh.exists()  # no writer can be inside the lock
    assert sorted(p.name for p in (tmp_path / "net1").iterdir()) == ["last_reserved_ip.0", "lock"]


def test_a_killed_save_leaves_only_a_dot_tmp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What GC sweeps is what a save killed mid-write leaves: cnilib.atomic's ``.tmp-*``."""

    def killed(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # stands in for SIGKILL between write and rename

    monkeypatch.setattr("cnilib.atomic.os.replace", killed)
    monkeypatch.setattr("cnilib.atomic.os.unlink", lambda path: None)  # no cleanup after KILL
    with pytest.raises(KeyboardInterrupt):
        flannel._save(str(tmp_path / "c1"), {"type": "bridge"})
    (leftover,) = os.listdir(tmp_path)
    assert is_temp_file(leftover) and leftover.startswith(".tmp-")
