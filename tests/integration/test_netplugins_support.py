"""Shared helpers for the netplugins integration tests (no tests here).

Resource names on this shared machine (team brief): netns ``npt-*``, bridges ``npt*``,
subnets in 10.202.0.0/16, 10.203.0.0/16 and fd02:202::/64, host ports 32000-32099, state in
pytest tmp dirs. Everything made is removed in finalizers, even when a test fails.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from netplugins.iptables import IPTables, chain_name, comment
from shim.process import stop_process

REF_DIR = "/usr/lib/cni"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for netns and iptables")
needs_reference = pytest.mark.skipif(
    not os.path.exists(os.path.join(REF_DIR, "bridge")), reason="reference CNI plugins missing"
)


def sh(*cmd: str, netns: str = "", check: bool = True) -> str:
    full = ["ip", "netns", "exec", netns, *cmd] if netns else list(cmd)
    proc = subprocess.run(full, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{full} failed: {proc.stderr}")
    return proc.stdout


def ip_json(*args: str, netns: str = "") -> list[dict[str, Any]]:
    out = sh("ip", "-j", *args, netns=netns)
    data = json.loads(out or "[]")
    assert isinstance(data, list)
    return data


@dataclass
class PluginRun:
    code: int
    stdout: bytes
    stderr: bytes

    @property
    def result(self) -> dict[str, Any]:
        assert self.code == 0, f"plugin failed ({self.code}): {self.stdout!r} {self.stderr!r}"
        if not self.stdout.strip():
            return {}
        data = json.loads(self.stdout)
        assert isinstance(data, dict)
        return data

    @property
    def error(self) -> dict[str, Any]:
        assert self.code != 0, f"plugin unexpectedly succeeded: {self.stdout!r}"
        data = json.loads(self.stdout)
        assert isinstance(data, dict)
        return data


def run_plugin(
    plugin_dir: str,
    plugin_type: str,
    command: str,
    conf: dict[str, Any],
    *,
    netns: str = "",
    container_id: str = "npt-c1",
    ifname: str = "eth0",
    cni_args: str = "",
    cni_path: str | None = None,
    path_prefix: str = "",
) -> PluginRun:
    """Exec one plugin; ``path_prefix`` goes before PATH (to shadow a tool with a fake)."""
    path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    env = {
        "PATH": f"{path_prefix}{os.pathsep}{path}" if path_prefix else path,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": cni_args,
        "CNI_PATH": cni_path or plugin_dir,
    }
    proc = subprocess.run(
        [os.path.join(plugin_dir, plugin_type)],
        input=json.dumps(conf).encode(),
        env=env,
        capture_output=True,
        timeout=120,
    )
    return PluginRun(proc.returncode, proc.stdout, proc.stderr)


def failing_tool(directory: Path, *names: str) -> str:
    """A directory of executables named ``names`` that fail like a tool that cannot work."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        tool = directory / name
        tool.write_text('#!/bin/sh\necho "$0: simulated failure" >&2\nexit 4\n')
        tool.chmod(0o755)
    return str(directory)


def addresses(ifname: str, netns: str = "") -> list[str]:
    out = []
    for link in ip_json("addr", "show", "dev", ifname, netns=netns):
        for a in link.get("addr_info", []):
            if a.get("scope") == "link":
                continue
            out.append(f"{a['local']}/{a['prefixlen']}")
    return sorted(out)


def routes(ifname: str, netns: str) -> list[str]:
    out = []
    for family in ("-4", "-6"):
        for r in ip_json(family, "route", "show", "dev", ifname, netns=netns):
            if r["dst"].startswith(("fe80", "ff00", "multicast")):
                continue
            out.append(f"{r['dst']} via {r.get('gateway', '-')} {r.get('protocol', '')}")
    return sorted(out)


def link_summary(ifname: str, netns: str = "") -> dict[str, Any]:
    (link,) = ip_json("-d", "link", "show", "dev", ifname, netns=netns)
    info = link.get("linkinfo", {})
    slave = info.get("info_slave_data", {})
    return {
        "kind": info.get("info_kind"),
        "mtu": link["mtu"],
        "up": "UP" in link["flags"],
        "promisc": "PROMISC" in link["flags"],
        "hairpin": slave.get("hairpin"),
        "vlan_filtering": info.get("info_data", {}).get("vlan_filtering"),
    }


def sysctls(ns: str, ifname: str, veth: str, bridge: str) -> dict[str, str]:
    """Per-interface knobs the plugins may touch (DAD, IPv6 on/off, proxy ARP, forwarding)."""
    inside = [
        f"net.ipv6.conf.{ifname}.accept_dad",
        f"net.ipv6.conf.{ifname}.disable_ipv6",
        f"net.ipv4.conf.{ifname}.arp_notify",
    ]
    outside = [
        f"net.ipv4.conf.{veth}.proxy_arp",
        f"net.ipv6.conf.{veth}.accept_dad",
        f"net.ipv4.conf.{bridge}.forwarding",
    ]
    out = {k: sh("sysctl", "-n", k, netns=ns).strip() for k in inside}
    out |= {k.replace(veth, "<veth>"): sh("sysctl", "-n", k).strip() for k in outside}
    return out


def normalise_result(result: dict[str, Any], netns: str, veth: str) -> dict[str, Any]:
    out = copy.deepcopy(result)
    for iface in out.get("interfaces", []):
        iface.pop("mac", None)
        if iface.get("name") == veth:
            iface["name"] = "<host-veth>"
        if "sandbox" in iface:
            iface["sandbox"] = "<netns>"
    for ip in out.get("ips", []):
        ip.pop("version", None)  # the Debian 1.1.1 binaries omit it on 0.4.0 (spec keeps it)
    if not out.get("dns"):
        out.pop("dns", None)
    for key in ("routes", "interfaces", "ips"):
        if not out.get(key):
            out.pop(key, None)
    return out


def state_files(data_dir: Path, network: str) -> dict[str, str]:
    net = data_dir / network
    if not net.exists():
        return {}
    return {p.name: p.read_text(errors="replace") for p in sorted(net.iterdir())}


def nat_rules(chain: str) -> list[str]:
    """The nat-table rules (IPv4 and IPv6) that mention ``chain``, other helpers' left out."""
    rules = []
    for binary in ("iptables", "ip6tables"):
        rules += [
            f"{binary} {line}"
            for line in sh(binary, "-w", "-t", "nat", "-S").splitlines()
            if chain in line
        ]
    return sorted(rules)


@dataclass
class Resources:
    """What a test made; ``cleanup()`` removes all of it, tolerating what is already gone."""

    netns: list[str] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    masq: list[tuple[str, str]] = field(default_factory=list)
    portmaps: list[tuple[str, str]] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)

    def new_netns(self) -> str:
        name = f"npt-{uuid.uuid4().hex[:10]}"
        sh("ip", "netns", "add", name)
        self.netns.append(name)
        return name

    def allow_forwarding(self, bridge: str) -> None:
        """Accept forwarding through ``bridge``, as flanneld does for the pod network.

        Docker sets the FORWARD policy to DROP and br_netfilter sends bridged frames through
        it; without this, even pod-to-pod traffic on one bridge would be dropped.
        """
        ipt = IPTables(4)
        note = f"npt test forward {bridge}"
        for direction in ("-i", "-o"):
            ipt.insert_unique(
                "filter",
                "FORWARD",
                [direction, bridge, "-m", "comment", "--comment", note, "-j", "ACCEPT"],
            )
        self.forward.append(bridge)

    def cleanup(self) -> None:
        for proc in self.processes:
            stop_process(proc, sig=signal.SIGKILL)
        for network, cid in self.portmaps:
            chain = chain_name(network, cid, "DN-")
            for version in (4, 6):
                ipt = IPTables(version)
                for rule in ipt.rules("nat", "CNI-HOSTPORT-DNAT"):
                    if rule[-2:] == ["-j", chain]:
                        ipt.delete_rule("nat", "CNI-HOSTPORT-DNAT", rule)
                ipt.delete_chain("nat", chain)
        for network, cid in self.masq:
            for version in (4, 6):
                ipt = IPTables(version)
                ipt.delete_rules_with_comment("nat", "POSTROUTING", comment(network, cid))
                ipt.delete_chain("nat", chain_name(network, cid))
        for bridge in self.forward:
            IPTables(4).delete_rules_with_comment("filter", "FORWARD", f"npt test forward {bridge}")
        for name in self.netns:
            sh("ip", "netns", "del", name, check=False)
        for name in self.links + self.bridges:
            sh("ip", "link", "del", name, check=False)


@contextlib.contextmanager
def resources() -> Iterator[Resources]:
    res = Resources()
    try:
        yield res
    finally:
        res.cleanup()


def netns_path(name: str) -> str:
    return f"/run/netns/{name}"


def tcp_listener(res: Resources, netns: str, port: int, host: str = "0.0.0.0") -> None:
    """A tiny TCP server in ``netns`` that answers every connection with ``pong <netns>``."""
    code = (
        "import socket,sys\n"
        f"s=socket.socket(socket.AF_INET6 if ':' in {host!r} else socket.AF_INET)\n"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        f"s.bind(({host!r},{port}));s.listen(16)\n"
        "print('listening',flush=True)\n"
        "while True:\n"
        "    c,_=s.accept();c.sendall(b'pong " + netns + "');c.close()\n"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code],
        stdout=subprocess.PIPE,
    )
    res.processes.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"listening"


def tcp_request(host: str, port: int, netns: str = "", timeout: float = 5.0) -> str:
    """Connect (from ``netns`` or the host) and return what the listener said."""
    code = (
        "import socket,sys\n"
        f"c=socket.create_connection(({host!r},{port}),timeout={timeout})\n"
        "sys.stdout.write(c.recv(100).decode())\n"
    )
    cmd = [sys.executable, "-c", code]
    full = ["ip", "netns", "exec", netns, *cmd] if netns else cmd
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout + 10)
    return proc.stdout if proc.returncode == 0 else f"ERROR: {proc.stderr.strip()[-200:]}"
