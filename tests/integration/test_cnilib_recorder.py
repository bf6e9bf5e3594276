"""cnilib against real plugin processes: the recording plugin in tests/cniplugins.

No root needed: the recorder touches no namespace, it only records what it was given
(argv, environment, stdin) and fails or hangs on request. What it proves is the
runtime's side of the protocol, byte for byte.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cnilib.api import CNIConfig
from cnilib.conf import parse_conf_list
from cnilib.errors import CNIError, DecodeError, PluginError, PluginTimeoutError, VersionError
from cnilib.types import GCAttachment, NetworkConfigList, RuntimeConf
from tests.cniplugins.harness import (
    calls,
    cleanup_pid,
    install_recorder,
    process_gone,
    read_log,
)

TYPES = ("rec-a", "rec-b", "rec-c")
CAPS = {
    "portMappings": [{"hostPort": 31000, "containerPort": 80, "protocol": "tcp"}],
    "bandwidth": {"ingressRate": 1000, "ingressBurst": 100},
    "dns": {"servers": ["10.201.0.53"]},
}


@dataclass
class Rig:
    bin_dir: Path
    log: Path
    cache_dir: Path
    netns: Path
    cni: CNIConfig

    def conf(
        self, version: str, behave: dict[int, dict[str, Any]] | None = None, **extra: Any
    ) -> NetworkConfigList:
        """rec-a (portMappings on, bandwidth off) -> rec-b (bandwidth) -> rec-c (none)."""
        plugins: list[dict[str, Any]] = [
            {
                "type": "rec-a",
                "tag": "a",
                "log": str(self.log),
                "ip": "10.201.0.2/24",
                "capabilities": {"portMappings": True, "bandwidth": False},
            },
            {
                "type": "rec-b",
                "tag": "b",
                "log": str(self.log),
                "capabilities": {"bandwidth": True},
                "custom": {"kept": [1, 2]},
            },
            {"type": "rec-c", "tag": "c", "log": str(self.log), "ip": "fd01:201::2/64"},
        ]
        for index, how in (behave or {}).items():
            plugins[index]["behave"] = how
        obj = {"cniVersion": version, "name": "recnet", "plugins": plugins, **extra}
        return parse_conf_list(json.dumps(obj).encode())

    def rt(self, container_id: str = "c1", **fields: Any) -> RuntimeConf:
        base: dict[str, Any] = {
            "container_id": container_id,
            "netns": str(self.netns),
            "ifname": "eth0",
            "args": (("IgnoreUnknown", "1"), ("K8S_POD_NAME", "p1")),
            "capability_args": CAPS,
        }
        base.update(fields)
        return RuntimeConf(**base)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    bin_dir = tmp_path / "bin"
    for name in TYPES:
        install_recorder(bin_dir, name)
    netns = tmp_path / "fake-netns"  # only its existence matters to the runtime
    netns.write_text("")
    cni = CNIConfig(
        [str(bin_dir), str(tmp_path / "nothing-here")], str(tmp_path / "cache"), timeout=20
    )
    yield Rig(bin_dir, tmp_path / "calls.jsonl", tmp_path / "cache", netns, cni)
    for record in read_log(tmp_path / "calls.jsonl"):
        for key in ("pid", "child_pid"):
            if key in record:
                cleanup_pid(record[key])


def order(log: Path) -> list[str]:
    return [f"{r['command']}:{r['tag']}" for r in calls(log)]


def stdin_of(log: Path, command: str, tag: str) -> dict[str, Any]:
    [record] = [r for r in calls(log, command) if r["tag"] == tag]
    parsed: dict[str, Any] = json.loads(record["stdin_raw"])
    return parsed


def ip(address: str, index: int, version: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"interface": index, "address": address}
    if not version.startswith("1."):
        entry = {"version": "6" if ":" in address else "4", **entry}
    return entry


def expected_results(version: str, netns: str) -> list[dict[str, Any]]:
    """The result after each plugin, as the runtime re-serializes it."""
    a = {"name": "a", "sandbox": netns}
    b = {"name": "b", "sandbox": netns}
    c = {"name": "c", "sandbox": netns}
    ip_a = ip("10.201.0.2/24", 0, version)
    ip_c = ip("fd01:201::2/64", 2, version)
    return [
        {"cniVersion": version, "interfaces": [a], "ips": [ip_a], "dns": {}},
        {"cniVersion": version, "interfaces": [a, b], "ips": [ip_a], "dns": {}},
        {"cniVersion": version, "interfaces": [a, b, c], "ips": [ip_a, ip_c], "dns": {}},
    ]


VERSIONS = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@pytest.mark.parametrize("version", VERSIONS)
def test_add_in_order_del_in_reverse_with_exact_stdin(rig: Rig, version: str) -> None:
    conf = rig.conf(version)
    rt = rig.rt()
    result = rig.cni.add_network_list(conf, rt)
    final = expected_results(version, str(rig.netns))
    assert result.to_dict() == final[2]
    rig.cni.del_network_list(conf, rt)
    assert order(rig.log) == ["ADD:a", "ADD:b", "ADD:c", "DEL:c", "DEL:b", "DEL:a"]

    raws = [p.raw for p in conf.plugins]
    common = {"name": "recnet", "cniVersion": version}
    assert stdin_of(rig.log, "ADD", "a") == {
        **raws[0],
        **common,
        "runtimeConfig": {"portMappings": CAPS["portMappings"]},
    }
    assert stdin_of(rig.log, "ADD", "b") == {
        **raws[1],
        **common,
        "prevResult": final[0],
        "runtimeConfig": {"bandwidth": CAPS["bandwidth"]},
    }
    assert stdin_of(rig.log, "ADD", "c") == {**raws[2], **common, "prevResult": final[1]}
    # DEL: the cached final result from 0.4.0 on (spec), nothing before.
    prev = {"prevResult": final[2]} if version != "0.3.1" else {}
    assert stdin_of(rig.log, "DEL", "a") == {
        **raws[0],
        **common,
        **prev,
        "runtimeConfig": {"portMappings": CAPS["portMappings"]},
    }
    assert stdin_of(rig.log, "DEL", "c") == {**raws[2], **common, **prev}


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_check_in_order_with_cached_result(rig: Rig, version: str) -> None:
    conf = rig.conf(version)
    rig.cni.add_network_list(conf, rig.rt())
    rig.cni.check_network_list(conf, rig.rt())
    assert order(rig.log)[3:] == ["CHECK:a", "CHECK:b", "CHECK:c"]
    final = expected_results(version, str(rig.netns))[2]
    assert stdin_of(rig.log, "CHECK", "b")["prevResult"] == final
    rig.cni.del_network_list(conf, rig.rt())


def test_environment_and_argv(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNILIB_TEST_INHERITED", "yes")
    monkeypatch.setenv("CNI_IFNAME", "must-not-leak")
    conf = rig.conf("1.0.0")
    rig.cni.add_network_list(conf, rig.rt())
    rig.netns.unlink()  # the namespace vanished (e.g. after a reboot)
    rig.cni.del_network_list(conf, rig.rt())
    cni_path = f"{rig.bin_dir}:{rig.bin_dir.parent / 'nothing-here'}"
    for record in calls(rig.log):
        env = record["env"]
        assert record["argv"] == [str(rig.bin_dir / f"rec-{record['tag']}")]
        assert env["CNI_COMMAND"] == record["command"]
        assert env["CNI_CONTAINERID"] == "c1"
        assert env["CNI_IFNAME"] == "eth0"
        assert env["CNI_ARGS"] == "IgnoreUnknown=1;K8S_POD_NAME=p1"
        assert env["CNI_PATH"] == cni_path
        assert env["CNILIB_TEST_INHERITED"] == "yes"
        expected_netns = str(rig.netns) if record["command"] == "ADD" else ""
        assert env["CNI_NETNS"] == expected_netns


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_rollback_after_failure_at_each_position(rig: Rig, failing: int) -> None:
    conf = rig.conf("1.0.0", behave={failing: {"ADD": {"fail": 11, "msg": "no", "details": "d"}}})
    with pytest.raises(PluginError) as info:
        rig.cni.add_network_list(conf, rig.rt())
    assert (info.value.code, info.value.msg, info.value.details) == (11, "no", "d")
    tags = ["a", "b", "c"]
    assert order(rig.log) == [f"ADD:{t}" for t in tags[: failing + 1]] + ["DEL:c", "DEL:b", "DEL:a"]
    # The rollback DEL gets no prevResult: there is no final result to give.
    assert all("prevResult" not in r["stdin"] for r in calls(rig.log, "DEL"))
    assert not (rig.cache_dir / "results" / "recnet-c1-eth0").exists()


def test_rollback_errors_are_attached_not_masking(rig: Rig) -> None:
    conf = rig.conf(
        "1.0.0",
        behave={
            2: {"ADD": {"fail": 7, "msg": "bad add"}},
            1: {"DEL": {"fail": 5, "msg": "bad del"}},
        },
    )
    with pytest.raises(PluginError) as info:
        rig.cni.add_network_list(conf, rig.rt())
    assert info.value.msg == "bad add"
    assert any("bad del" in note for note in info.value.__notes__)
    assert order(rig.log)[-3:] == ["DEL:c", "DEL:b", "DEL:a"]


def test_timeout_kills_the_plugin_and_its_children(rig: Rig) -> None:
    rig.cni.timeout = 1.0
    conf = rig.conf("1.0.0", behave={1: {"ADD": {"hang": True, "hangChild": True}}})
    with pytest.raises(PluginTimeoutError) as info:
        rig.cni.add_network_list(conf, rig.rt())
    assert "timed out after 1s and was killed" in str(info.value)
    assert "rec-b" in str(info.value)
    [hung] = [r for r in calls(rig.log, "ADD") if r["tag"] == "b"]
    assert process_gone(hung["pid"])
    assert process_gone(hung["child_pid"])
    assert order(rig.log)[-3:] == ["DEL:c", "DEL:b", "DEL:a"]


@pytest.mark.parametrize(("exit_code", "error"), [(0, DecodeError), (1, DecodeError)])
def test_garbage_output_is_quoted(rig: Rig, exit_code: int, error: type[CNIError]) -> None:
    conf = rig.conf(
        "1.0.0", behave={1: {"ADD": {"garbage": "Segmentation fault", "exit": exit_code}}}
    )
    with pytest.raises(error) as info:
        rig.cni.add_network_list(conf, rig.rt())
    assert "Segmentation fault" in str(info.value)
    assert info.value.code == 6
    assert order(rig.log)[-3:] == ["DEL:c", "DEL:b", "DEL:a"]


def test_version_is_asked_and_refused_before_add(rig: Rig) -> None:
    install_recorder(rig.bin_dir, "rec-b", supported_versions=["0.3.1", "0.4.0"], log=rig.log)
    with pytest.raises(VersionError, match="rec-b supports"):
        rig.cni.add_network_list(rig.conf("1.0.0"), rig.rt())
    assert [r["command"] for r in read_log(rig.log)] == ["VERSION"]
    [asked] = read_log(rig.log)
    assert json.loads(asked["stdin_raw"]) == {"cniVersion": "1.1.0"}
    assert asked["env"]["CNI_COMMAND"] == "VERSION"


def test_negotiation_picks_common_version_from_cni_versions(rig: Rig) -> None:
    install_recorder(rig.bin_dir, "rec-c", supported_versions=["0.4.0", "1.0.0"])
    conf = rig.conf("1.1.0", cniVersions=["0.4.0", "1.0.0", "1.1.0"])
    assert rig.cni.add_network_list(conf, rig.rt()).cni_version == "1.0.0"
    assert {r["stdin"]["cniVersion"] for r in calls(rig.log)} == {"1.0.0"}
    rig.cni.del_network_list(conf, rig.rt())


def test_gc_deletes_stale_attachments_then_tells_plugins(rig: Rig) -> None:
    conf = rig.conf("1.1.0")
    for cid in ("c1", "c2", "c3"):
        rig.cni.add_network_list(conf, rig.rt(cid))
    other = parse_conf_list(json.dumps({**conf.raw, "name": "othernet"}).encode())
    rig.cni.add_network_list(other, rig.rt("c9"))
    rig.log.unlink()

    rig.cni.gc_network_list(conf, [GCAttachment("c2", "eth0")])

    records = calls(rig.log)
    dels = [(r["env"]["CNI_CONTAINERID"], r["tag"]) for r in records if r["command"] == "DEL"]
    assert dels == [("c1", "c"), ("c1", "b"), ("c1", "a"), ("c3", "c"), ("c3", "b"), ("c3", "a")]
    # The stale DELs replay what ADD was given (from the cache).
    assert all(
        r["env"]["CNI_ARGS"] == "IgnoreUnknown=1;K8S_POD_NAME=p1"
        for r in records
        if r["command"] == "DEL"
    )
    gcs = [r for r in records if r["command"] == "GC"]
    assert [r["tag"] for r in gcs] == ["a", "b", "c"]
    for record in gcs:
        valid = [{"containerID": "c2", "ifname": "eth0"}]
        assert record["stdin"]["cni.dev/valid-attachments"] == valid
        assert record["stdin"]["cni.dev/attachments"] == valid  # libcni sends both
        assert record["stdin"]["name"] == "recnet"
        assert record["env"]["CNI_CONTAINERID"] == ""
    remaining = sorted((a.network_name, a.container_id) for a in rig.cni.get_cached_attachments(""))
    assert remaining == [("othernet", "c9"), ("recnet", "c2")]


def test_gc_before_110_only_deletes_and_never_trusts_proc_netns(rig: Rig) -> None:
    conf = rig.conf("1.0.0")
    rig.cni.add_network_list(conf, rig.rt("c1", netns=f"/proc/{os.getpid()}/ns/net"))
    rig.log.unlink()
    rig.cni.gc_network_list(conf, [])
    assert order(rig.log) == ["DEL:c", "DEL:b", "DEL:a"]
    # A cached /proc/<pid>/ns/net may be a stranger's namespace by now.
    assert {r["env"]["CNI_NETNS"] for r in calls(rig.log)} == {""}
    assert rig.cni.get_cached_attachments("recnet") == []


def test_gc_reports_failures_but_keeps_going(rig: Rig) -> None:
    conf = rig.conf("1.1.0", behave={0: {"GC": {"fail": 5, "msg": "gc broke"}}})
    rig.cni.add_network_list(conf, rig.rt("c1"))
    with pytest.raises(CNIError, match="gc broke"):
        rig.cni.gc_network_list(conf, [])
    assert [r["tag"] for r in calls(rig.log, "GC")] == ["a", "b", "c"]
    assert rig.cni.get_cached_attachments("recnet") == []


@pytest.mark.parametrize("code", [50, 51])
def test_status_not_ready_codes(rig: Rig, code: int) -> None:
    conf = rig.conf("1.1.0", behave={1: {"STATUS": {"fail": code, "msg": "not yet"}}})
    with pytest.raises(PluginError) as info:
        rig.cni.get_status_network_list(conf)
    assert info.value.code == code
    assert info.value.msg == "not yet"
    assert [r["tag"] for r in calls(rig.log, "STATUS")] == ["a", "b"]


def test_status_ready_and_stdin(rig: Rig) -> None:
    rig.cni.get_status_network_list(rig.conf("1.1.0"))
    statuses = calls(rig.log, "STATUS")
    assert [r["tag"] for r in statuses] == ["a", "b", "c"]
    assert statuses[0]["stdin"]["cniVersion"] == "1.1.0"
    assert "runtimeConfig" not in statuses[0]["stdin"]
    assert statuses[0]["env"]["CNI_CONTAINERID"] == ""


def test_del_is_repeatable_and_tolerates_corrupt_cache(rig: Rig) -> None:
    conf = rig.conf("1.0.0")
    rig.cni.add_network_list(conf, rig.rt())
    (rig.cache_dir / "results" / "recnet-c1-eth0").write_text("{corrupt")
    rig.cni.del_network_list(conf, rig.rt())
    rig.cni.del_network_list(conf, rig.rt())
    assert order(rig.log)[3:] == ["DEL:c", "DEL:b", "DEL:a"] * 2
    assert all("prevResult" not in r["stdin"] for r in calls(rig.log, "DEL"))
    assert not (rig.cache_dir / "results" / "recnet-c1-eth0").exists()


def test_parallel_attachments_stay_separate(rig: Rig) -> None:
    """One CNIConfig shared by many threads, as the shim uses it."""
    conf = rig.conf("1.0.0")
    ids = [f"p{i}" for i in range(8)]
    errors: list[BaseException] = []

    def lifecycle(cid: str) -> None:
        try:
            rig.cni.add_network_list(conf, rig.rt(cid))
            rig.cni.check_network_list(conf, rig.rt(cid))
            rig.cni.del_network_list(conf, rig.rt(cid))
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=lifecycle, args=(cid,)) for cid in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    for cid in ids:
        mine = [
            f"{r['command']}:{r['tag']}"
            for r in calls(rig.log)
            if r["env"]["CNI_CONTAINERID"] == cid
        ]
        assert mine == [
            "ADD:a",
            "ADD:b",
            "ADD:c",
            "CHECK:a",
            "CHECK:b",
            "CHECK:c",
            "DEL:c",
            "DEL:b",
            "DEL:a",
        ]
    assert rig.cni.get_cached_attachments("") == []
