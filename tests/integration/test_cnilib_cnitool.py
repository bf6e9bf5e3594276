"""Our cnitool against the library and the reference plugins: an attachment added by
one is deleted cleanly by the other (they share libcni's cache layout and the Go
cnitool's container id), and the CLI's environment reaches the plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnilib.api import CNIConfig
from cnilib.cli import container_id_for
from cnilib.conf import find_conf_list
from cnilib.types import RuntimeConf
from tests.cniplugins.harness import calls, delete_leftover_attachments, install_recorder

REFERENCE_BIN = "/usr/lib/cni"


def cnitool(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("cnitool")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "cnilib.cli"]
    return subprocess.run(
        [*argv, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_cli_environment_reaches_plugins(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    install_recorder(tmp_path / "bin", "rec")
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    (confdir / "10-rec.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.1.0",
                "name": "recnet",
                "plugins": [
                    {
                        "type": "rec",
                        "tag": "r",
                        "log": str(log),
                        "ip": "10.201.60.2/24",
                        "capabilities": {"mac": True},
                    }
                ],
            }
        )
    )
    netns = tmp_path / "ns"
    netns.write_text("")
    env = {
        "NETCONFPATH": str(confdir),
        "CNI_PATH": str(tmp_path / "bin"),
        "CNI_CACHE_DIR": str(tmp_path / "cache"),
        "CNI_ARGS": "IgnoreUnknown=1;A=b",
        "CAP_ARGS": '{"mac": "aa:bb:cc:dd:ee:ff", "portMappings": []}',
        "CNI_IFNAME": "net1",
    }
    added = cnitool("add", "recnet", str(netns), env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["ips"] == [{"interface": 0, "address": "10.201.60.2/24"}]
    for command in ("check", "status", "del", "gc"):
        done = cnitool(command, "recnet", str(netns), env=env)
        assert done.returncode == 0, done.stderr
    assert [r["command"] for r in calls(log)] == ["ADD", "CHECK", "STATUS", "DEL", "GC"]
    [add] = calls(log, "ADD")
    assert add["env"]["CNI_CONTAINERID"] == container_id_for(str(netns))
    assert add["env"]["CNI_IFNAME"] == "net1"
    assert add["env"]["CNI_ARGS"] == "IgnoreUnknown=1;A=b"
    assert add["env"]["CNI_NETNS"] == str(netns)
    assert add["stdin"]["runtimeConfig"] == {"mac": "aa:bb:cc:dd:ee:ff"}
    version = cnitool("version", "recnet", env=env)
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout)["plugins"]["rec"]["supportedVersions"][-1] == "1.1.0"


def test_cli_failure_exits_non_zero_with_the_plugins_error(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    install_recorder(tmp_path / "bin", "rec")
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    (confdir / "10-rec.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "recnet",
                "plugins": [
                    {
                        "type": "rec",
                        "log": str(log),
                        "behave": {"ADD": {"fail": 11, "msg": "pool exhausted"}},
                    }
                ],
            }
        )
    )
    env = {
        "NETCONFPATH": str(confdir),
        "CNI_PATH": str(tmp_path / "bin"),
        "CNI_CACHE_DIR": str(tmp_path / "cache"),
    }
    failed = cnitool("add", "recnet", str(tmp_path), env=env)
    assert failed.returncode == 1
    assert "pool exhausted" in failed.stderr and "code 11" in failed.stderr
    assert failed.stdout == ""
    missing = cnitool("add", "nosuchnet", str(tmp_path), env=env)
    assert missing.returncode == 1
    assert "no network 'nosuchnet'" in missing.stderr


@dataclass
class Rig:
    netns_name: str
    netns: str
    confdir: Path
    cache_dir: Path
    data_dir: Path
    env: dict[str, str]
    bridge: str

    def cni(self) -> CNIConfig:
        return CNIConfig([REFERENCE_BIN], str(self.cache_dir))

    def rt(self) -> RuntimeConf:
        # The shim side must name the attachment as cnitool did to find its cache.
        return RuntimeConf(container_id_for(self.netns), self.netns, "eth0")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    if os.geteuid() != 0 or not os.path.exists(f"{REFERENCE_BIN}/bridge"):
        pytest.skip("needs root and the reference plugins")
    tag = uuid.uuid4().hex[:6]
    name, bridge = f"cnilibt-{tag}", f"cnilib{tag}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    (confdir / "10-interop.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "cnilibio",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge,
                        "isGateway": True,
                        "ipMasq": True,
                        "ipam": {
                            "type": "host-local",
                            "dataDir": str(tmp_path / "ipam"),
                            "ranges": [[{"subnet": "10.201.61.0/24"}]],
                        },
                    },
                    {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "0"}},
                ],
            }
        )
    )
    env = {
        "NETCONFPATH": str(confdir),
        "CNI_PATH": REFERENCE_BIN,
        "CNI_CACHE_DIR": str(tmp_path / "cache"),
    }
    try:
        yield Rig(
            name,
            f"/var/run/netns/{name}",
            confdir,
            tmp_path / "cache",
            tmp_path / "ipam",
            env,
            bridge,
        )
    finally:
        delete_leftover_attachments(
            CNIConfig([REFERENCE_BIN], str(tmp_path / "cache")), f"/var/run/netns/{name}"
        )
        subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)


def assert_clean(rig: Rig) -> None:
    ipam = rig.data_dir / "cnilibio"
    assert [p.name for p in ipam.iterdir() if p.name.startswith("10.")] == []
    assert list((rig.cache_dir / "results").iterdir()) == []
    links = json.loads(
        subprocess.run(
            ["ip", "-n", rig.netns_name, "-j", "link"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert [link["ifname"] for link in links] == ["lo"]
    assert os.listdir(f"/sys/class/net/{rig.bridge}/brif") == []
    nat = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True
    ).stdout
    assert container_id_for(rig.netns) not in nat


@pytest.mark.integration
def test_added_by_cnitool_deleted_by_library(rig: Rig) -> None:
    added = cnitool("add", "cnilibio", rig.netns, env=rig.env)
    assert added.returncode == 0, added.stderr
    cache_file = rig.cache_dir / "results" / f"cnilibio-{container_id_for(rig.netns)}-eth0"
    assert json.loads(cache_file.read_text())["kind"] == "cniCacheV1"
    assert (rig.data_dir / "cnilibio" / "10.201.61.2").exists()
    net = find_conf_list(str(rig.confdir), "cnilibio")
    cni = rig.cni()
    cached = cni.get_cached_result("cnilibio", rig.rt())
    assert cached is not None and str(cached.ips[0].address) == "10.201.61.2/24"
    cni.check_network_list(net, rig.rt())
    cni.del_network_list(net, rig.rt())
    assert_clean(rig)


@pytest.mark.integration
def test_added_by_library_deleted_by_cnitool(rig: Rig) -> None:
    net = find_conf_list(str(rig.confdir), "cnilibio")
    result = rig.cni().add_network_list(net, rig.rt())
    assert str(result.ips[0].address) == "10.201.61.2/24"
    checked = cnitool("check", "cnilibio", rig.netns, env=rig.env)
    assert checked.returncode == 0, checked.stderr
    deleted = cnitool("del", "cnilibio", rig.netns, env=rig.env)
    assert deleted.returncode == 0, deleted.stderr
    assert_clean(rig)


@pytest.mark.integration
def test_cnitool_gc_releases_every_attachment_of_the_network(rig: Rig) -> None:
    added = cnitool("add", "cnilibio", rig.netns, env=rig.env)
    assert added.returncode == 0, added.stderr
    gc = cnitool("gc", "cnilibio", env=rig.env)
    assert gc.returncode == 0, gc.stderr
    assert_clean(rig)
