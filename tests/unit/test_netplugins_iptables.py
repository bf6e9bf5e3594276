"""The iptables wrapper: a failed snapshot is an error, the lock is waited for (pure: the
commands are faked, nothing touches the host's tables)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from netplugins import errors, ipconfig, iptables, portmap, skel


class FakeCommands:
    """Stands in for subprocess.run: records argv, fails the commands named in ``failing``."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.calls: list[list[str]] = []
        self.failing = failing

    def __call__(self, cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(cmd))
        if cmd[0] in self.failing:
            return subprocess.CompletedProcess(cmd, 4, "", "Another app is currently holding it")
        out = "*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n" if cmd[0].endswith("-save") else ""
        return subprocess.CompletedProcess(cmd, 0, out, "")


@pytest.fixture
def broken_save(monkeypatch: pytest.MonkeyPatch) -> FakeCommands:
    fake = FakeCommands(failing=("iptables-save", "ip6tables-save"))
    monkeypatch.setattr("netplugins.iptables.subprocess.run", fake)
    return fake


def test_failed_save_is_an_error_not_an_empty_table(broken_save: FakeCommands) -> None:
    with pytest.raises(errors.IptablesFailure, match="iptables-save -t nat") as info:
        iptables.IPTables(4).save("nat")
    assert "holding it" in info.value.details


def test_masquerade_teardown_fails_when_the_snapshot_fails(broken_save: FakeCommands) -> None:
    """bridge/ptp DEL: nothing may be reported removed when nothing could be looked at."""
    with pytest.raises(errors.IptablesFailure):
        ipconfig.teardown_masquerade("net1", "c1")
    assert not any(c[0].endswith("-restore") for c in broken_save.calls)


def test_masquerade_gc_fails_when_the_snapshot_fails(broken_save: FakeCommands) -> None:
    with pytest.raises(errors.IptablesFailure):
        ipconfig.gc_masquerade("net1", set())


def test_portmap_del_fails_when_the_snapshot_fails(broken_save: FakeCommands) -> None:
    netconf = {"cniVersion": "1.0.0", "name": "net1", "type": "portmap"}
    args = skel.CmdArgs(
        command="DEL",
        container_id="c1",
        netns="",
        ifname="eth0",
        args="",
        path=(),
        stdin=json.dumps(netconf).encode(),
        netconf=netconf,
    )
    with pytest.raises(errors.IptablesFailure):
        portmap.cmd_del(args)


def test_lock_is_waited_for_without_a_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """go-iptables' default: ``--wait`` with no seconds, i.e. as long as the lock is held."""
    fake = FakeCommands()
    monkeypatch.setattr("netplugins.iptables.subprocess.run", fake)
    ipt = iptables.IPTables(6)
    ipt.append_unique("nat", "POSTROUTING", ["-j", "ACCEPT"])
    ipt.restore("nat", ["-N X"])
    waiting = [c for c in fake.calls if not c[0].endswith("-save")]
    assert {c[0] for c in waiting} == {"ip6tables", "ip6tables-restore"}
    for cmd in waiting:
        at = cmd.index("-w")
        assert at + 1 == len(cmd) or not cmd[at + 1].isdigit(), cmd
