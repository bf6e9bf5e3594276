"""cnilib driving the reference plugins (/usr/lib/cni, containernetworking v1.1.1) in
namespaces these tests create: ADD / CHECK / DEL round trips that leave nothing behind.

Resources (shared machine): netns `cnilibt-*`, bridges `cnilib*`, subnets inside
10.201.0.0/16 and fd01:201::/64, host ports 31000-31099, data and cache in tmp dirs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cnilib.api import CNIConfig
from cnilib.conf import parse_conf
from cnilib.types import NetworkConfigList, Result, RuntimeConf
from tests.cniplugins.harness import delete_leftover_attachments

REFERENCE_BIN = "/usr/lib/cni"
VERSIONS = ["0.3.1", "0.4.0", "1.0.0"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(
        not os.path.exists(f"{REFERENCE_BIN}/bridge"), reason="reference CNI plugins not installed"
    ),
]


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True).stdout


@dataclass
class Env:
    netns_name: str
    netns: str
    bridge: str
    data_dir: Path
    cache_dir: Path
    cni: CNIConfig
    container_id: str

    def rt(self, **fields: Any) -> RuntimeConf:
        base: dict[str, Any] = {
            "container_id": self.container_id,
            "netns": self.netns,
            "ifname": "eth0",
            "args": (("IgnoreUnknown", "1"),),
        }
        base.update(fields)
        return RuntimeConf(**base)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    tag = uuid.uuid4().hex[:6]
    name = f"cnilibt-{tag}"
    sh("ip", "netns", "add", name)
    bridge = f"cnilib{tag}"
    cni = CNIConfig([REFERENCE_BIN], str(tmp_path / "cache"), timeout=30)
    try:
        yield Env(
            netns_name=name,
            netns=f"/var/run/netns/{name}",
            bridge=bridge,
            data_dir=tmp_path / "ipam",
            cache_dir=tmp_path / "cache",
            cni=cni,
            container_id=f"cnilibt{tag}",
        )
    finally:
        delete_leftover_attachments(cni, f"/var/run/netns/{name}")
        sh("ip", "netns", "del", name, check=False)
        if os.path.exists(f"/sys/class/net/{bridge}"):
            sh("ip", "link", "del", bridge, check=False)


def host_local(env: Env, subnet: str, v6_range: tuple[str, str] | None = None) -> dict[str, Any]:
    ranges: list[list[dict[str, str]]] = [[{"subnet": subnet}]]
    if v6_range:
        ranges.append(
            [{"subnet": "fd01:201::/64", "rangeStart": v6_range[0], "rangeEnd": v6_range[1]}]
        )
    return {
        "type": "host-local",
        "dataDir": str(env.data_dir),
        "ranges": ranges,
        "routes": [{"dst": "0.0.0.0/0"}],
    }


def conf(version: str, name: str, plugins: list[dict[str, Any]], **extra: Any) -> NetworkConfigList:
    obj = {"cniVersion": version, "name": name, "plugins": plugins, **extra}
    return parse_conf(json.dumps(obj).encode(), source=f"test {name}")


def iptables_lines_mentioning(text: str) -> list[str]:
    found = []
    for tool in ("iptables-save", "ip6tables-save"):
        found += [line for line in sh(tool).splitlines() if text in line]
    return found


def host_links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def netns_links(env: Env) -> list[str]:
    out = sh("ip", "-n", env.netns_name, "-j", "link", "show")
    return sorted(link["ifname"] for link in json.loads(out))


def bridge_ports(env: Env) -> list[str]:
    if not os.path.exists(f"/sys/class/net/{env.bridge}"):
        return []
    return sorted(os.listdir(f"/sys/class/net/{env.bridge}/brif"))


def wait_until(condition: Callable[[], bool], limit: float = 20.0) -> bool:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def host_side(result: Result, env: Env) -> list[str]:
    """Host links a result names (veths, ifb devices), but not the shared bridge."""
    return [i.name for i in result.interfaces if not i.sandbox and i.name != env.bridge]


def assert_nothing_left(env: Env, net_name: str, host_ifaces: list[str]) -> None:
    """Other helpers create links on this machine too, so only our own are checked:
    the namespace, the test bridge's ports and the host links our result named."""
    assert netns_links(env) == ["lo"]
    assert bridge_ports(env) == []
    assert set(host_ifaces) & host_links() == set()
    ipam_dir = env.data_dir / net_name
    if ipam_dir.exists():
        kept = {p.name for p in ipam_dir.iterdir()}
        assert {n for n in kept if n != "lock" and not n.startswith("last_reserved_ip")} == set()
    assert list((env.cache_dir / "results").glob("*")) == []
    assert iptables_lines_mentioning(env.container_id) == []


def serve_once_in_netns(env: Env, address: str, port: int) -> subprocess.Popen[bytes]:
    """A one-shot TCP server inside the test's namespace; prints READY when listening."""
    code = (
        "import socket,sys\n"
        f"s=socket.create_server(({address!r},{port}))\n"
        "print('READY',flush=True)\n"
        "c,_=s.accept();c.sendall(b'hello from netns');c.close()\n"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", env.netns_name, sys.executable, "-c", code], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"READY"
    return proc


def container_ipv4(result: Result) -> str:
    return next(str(i.address.ip) for i in result.ips if i.address.version == 4)


@pytest.mark.parametrize("version", VERSIONS)
def test_bridge_tuning_bandwidth_round_trip(env: Env, version: str) -> None:
    index = VERSIONS.index(version)
    subnet = f"10.201.{10 + index}.0/24"
    v6 = (f"fd01:201::{index + 1}00", f"fd01:201::{index + 1}ff")
    net = conf(
        version,
        "cnilibbr",
        [
            {
                "type": "bridge",
                "bridge": env.bridge,
                "isGateway": True,
                "ipMasq": True,
                "ipam": host_local(env, subnet, v6),
            },
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "0"}},
            {"type": "bandwidth", "capabilities": {"bandwidth": True}},
        ],
    )
    rt = env.rt(
        capability_args={
            "bandwidth": {
                "ingressRate": 8_000_000,
                "ingressBurst": 80_000,
                "egressRate": 8_000_000,
                "egressBurst": 80_000,
            },
            "portMappings": [{"hostPort": 31001, "containerPort": 80}],
        }
    )
    result = env.cni.add_network_list(net, rt)

    assert result.cni_version == version
    addresses = {str(i.address) for i in result.ips}
    assert addresses == {f"10.201.{10 + index}.2/24", f"fd01:201::{index + 1}00/64"}
    eth0 = next(i for i in result.interfaces if i.name == "eth0")
    assert eth0.sandbox == env.netns
    assert "eth0" in netns_links(env)
    assert (
        (env.data_dir / "cnilibbr" / f"10.201.{10 + index}.2")
        .read_text()
        .startswith(env.container_id)
    )
    assert iptables_lines_mentioning(env.container_id) != []  # ipMasq rules
    ours = host_side(result, env)
    assert any(n.startswith("bwp") for n in ours)  # bandwidth's ifb device
    assert set(ours) <= host_links()
    assert len(bridge_ports(env)) == 1
    assert env.cni.get_cached_result("cnilibbr", rt) is not None

    # Real traffic, only to the namespace this test created.
    server = serve_once_in_netns(env, container_ipv4(result), 8080)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import socket;s=socket.create_connection(("
                f"{container_ipv4(result)!r},8080),timeout=5);print(s.recv(100).decode())"
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "hello from netns"
    server.wait(10)

    env.cni.check_network_list(net, rt)  # skipped for 0.3.1, real for the others
    env.cni.del_network_list(net, rt)
    assert_nothing_left(env, "cnilibbr", ours)
    env.cni.del_network_list(net, rt)  # DEL is repeatable


@pytest.mark.parametrize("version", VERSIONS)
def test_portmap_rules_added_and_removed(env: Env, version: str) -> None:
    index = VERSIONS.index(version)
    host_port = 31010 + index
    # portmap v1.1.1's CHECK looks for IPv4 rules in ip6tables and always fails, so this
    # list sets disableCheck, which also proves CHECK is skipped when asked to.
    net = conf(
        version,
        "cnilibpm",
        [
            {
                "type": "bridge",
                "bridge": env.bridge,
                "isGateway": True,
                "ipam": host_local(env, f"10.201.{20 + index}.0/24"),
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
        disableCheck=True,
    )
    rt = env.rt(
        capability_args={
            "portMappings": [{"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]
        }
    )
    result = env.cni.add_network_list(net, rt)
    rules = "\n".join(iptables_lines_mentioning(env.container_id))
    nat = sh("iptables-save", "-t", "nat")
    assert f"--dport {host_port}" in nat
    assert "CNI-DN-" in rules
    env.cni.check_network_list(net, rt)
    env.cni.del_network_list(net, rt)
    assert f"--dport {host_port} " not in sh("iptables-save", "-t", "nat")
    assert_nothing_left(env, "cnilibpm", host_side(result, env))


@pytest.mark.parametrize("version", VERSIONS)
def test_ptp_round_trip(env: Env, version: str) -> None:
    index = VERSIONS.index(version)
    net = conf(
        version,
        "cnilibptp",
        [
            {"type": "ptp", "ipMasq": True, "ipam": host_local(env, f"10.201.{30 + index}.0/24")},
            {"type": "tuning", "mtu": 1400},
        ],
    )
    rt = env.rt()
    result = env.cni.add_network_list(net, rt)
    host_veth = next(i.name for i in result.interfaces if not i.sandbox)
    assert host_veth in host_links()
    mtu = sh("ip", "-n", env.netns_name, "-j", "link", "show", "eth0")
    assert json.loads(mtu)[0]["mtu"] == 1400
    env.cni.check_network_list(net, rt)
    env.cni.del_network_list(net, rt)
    assert host_veth not in host_links()
    assert_nothing_left(env, "cnilibptp", [host_veth])


@pytest.mark.parametrize("version", VERSIONS)
def test_loopback_single_conf_round_trip(env: Env, version: str) -> None:
    net = parse_conf(
        json.dumps({"cniVersion": version, "name": "cniliblo", "type": "loopback"}).encode()
    )
    rt = env.rt(ifname="lo")
    result = env.cni.add_network_list(net, rt)
    assert [str(i.address) for i in result.ips] == ["127.0.0.1/8", "::1/128"]
    state = json.loads(sh("ip", "-n", env.netns_name, "-j", "link", "show", "lo"))[0]
    assert "UP" in state["flags"]
    env.cni.check_network_list(net, rt)
    env.cni.del_network_list(net, rt)
    assert list((env.cache_dir / "results").glob("*")) == []


def test_del_after_netns_vanished_releases_address(env: Env) -> None:
    net = conf(
        "1.0.0",
        "cnilibgone",
        [
            {"type": "bridge", "bridge": env.bridge, "ipam": host_local(env, "10.201.50.0/24")},
        ],
    )
    rt = env.rt()
    result = env.cni.add_network_list(net, rt)
    assert (env.data_dir / "cnilibgone" / "10.201.50.2").exists()
    sh("ip", "netns", "del", env.netns_name)  # e.g. the node rebooted
    env.cni.del_network_list(net, rt)  # sent with CNI_NETNS=""
    assert not (env.data_dir / "cnilibgone" / "10.201.50.2").exists()
    # The veth died with the namespace; the kernel reaps it asynchronously.
    assert wait_until(
        lambda: not bridge_ports(env) and not set(host_side(result, env)) & host_links()
    )
    assert list((env.cache_dir / "results").glob("*")) == []


def test_failed_add_rolls_back_real_allocation(env: Env) -> None:
    # tuning fails on an unknown sysctl after bridge+host-local allocated an address:
    # the rollback DEL must release it (the classic "no IP addresses available" leak).
    net = conf(
        "1.0.0",
        "cnilibrb",
        [
            {"type": "bridge", "bridge": env.bridge, "ipam": host_local(env, "10.201.51.0/24")},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_sysctl": "1"}},
        ],
    )
    with pytest.raises(Exception, match="tuning"):
        env.cni.add_network_list(net, env.rt())
    assert_nothing_left(env, "cnilibrb", [])


def test_version_of_reference_plugins(env: Env) -> None:
    assert env.cni.get_version_info("bridge")[-1] == "1.0.0"
    net = conf(
        "1.1.0",
        "cnilibv",
        [{"type": "bridge", "bridge": env.bridge}],
        cniVersions=["0.4.0", "1.0.0", "1.1.0"],
    )
    assert env.cni.negotiated_version(net) == "1.0.0"
