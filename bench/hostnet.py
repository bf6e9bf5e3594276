"""The benchmark's private piece of the host: one bridge network (its own bridge name, subnet,
host-local data dir), one pod namespace label, and the means to check and clean what the host
still holds of the benchmark's pods. Shared by the shim rounds and the floor rounds, so both
attach pods to exactly the same network configuration."""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DOCKER = "/usr/bin/docker"
REFERENCE_PLUGINS = "/usr/lib/cni"
INFRA_IMAGE = "registry.k8s.io/pause:3.10"
# The reference plugins shipped by Debian (v1.1.1) speak CNI up to 1.0.0.
CNI_VERSION = "1.0.0"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"


@dataclass
class BenchNetwork:
    """Bridge + host-local + portmap, the chain kubelet's usual bridge conflist holds."""

    bridge: str
    subnet: str
    data_dir: str
    name: str = "crbench"

    def conflist(self) -> dict[str, Any]:
        return {
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.subnet}]],
                        "dataDir": self.data_dir,
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }


@dataclass
class HostLeftovers:
    containers: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)
    reservations: list[str] = field(default_factory=list)
    iptables_rules: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    bridge: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not any(vars(self).values())

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in vars(self).items()}


def _run(*cmd: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check, timeout=120)


def labelled_containers(pod_namespace: str) -> list[str]:
    """Every container, running or not, whose pod namespace label is the benchmark's."""
    out = _run(
        DOCKER,
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        f"label={POD_NAMESPACE_LABEL}={pod_namespace}",
        check=True,
    )
    return out.stdout.split()


def bridge_veths(bridge: str) -> list[str]:
    links = json.loads(_run("ip", "-j", "link", "show", "type", "veth", check=True).stdout or "[]")
    return [str(link["ifname"]) for link in links if link.get("master") == bridge]


def reservations(net: BenchNetwork) -> list[str]:
    """host-local's one-file-per-address records (its lock and last_reserved_ip are state)."""
    net_dir = os.path.join(net.data_dir, net.name)
    if not os.path.isdir(net_dir):
        return []
    return [f for f in os.listdir(net_dir) if f != "lock" and not f.startswith("last_reserved_ip")]


def iptables_lines(ids: set[str]) -> list[tuple[str, str]]:
    """(table, rule) for every rule in any table that names one of `ids` (the bridge plugin's
    ipMasq and portmap rules carry the container id in a comment)."""
    saved = _run("iptables-save").stdout
    table = ""
    found = []
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A ") and any(i in line for i in ids):
            found.append((table, line))
    return found


def mounts_under(directory: str) -> list[str]:
    """Mount points below `directory` (pinned network namespaces), from /proc/self/mounts."""
    prefix = os.path.realpath(directory).rstrip("/") + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if p.startswith(prefix)]


def leftovers(
    net: BenchNetwork, pod_namespace: str, ids: set[str], mount_root: str, bridge: bool = False
) -> HostLeftovers:
    """What the host holds of the benchmark's pods; with `bridge`, the bridge too (CNI DEL
    never removes a bridge, so it is a leftover only once the benchmark has cleaned up)."""
    return HostLeftovers(
        bridge=[net.bridge] if bridge and os.path.exists(f"/sys/class/net/{net.bridge}") else [],
        containers=labelled_containers(pod_namespace),
        veths=bridge_veths(net.bridge),
        reservations=reservations(net),
        iptables_rules=[f"{t}: {r}" for t, r in iptables_lines(ids)],
        mounts=mounts_under(mount_root),
    )


def force_cleanup(net: BenchNetwork, pod_namespace: str, ids: set[str], mount_root: str) -> None:
    """Remove by hand whatever the benchmark's pods still hold. Touches only things named by
    our label, our bridge, our ids and our own directories. A container whose id the benchmark
    never learnt (a RunPodSandbox cut short) is found by its label, and its id added to `ids`
    so that its iptables rules go too."""
    for cid in labelled_containers(pod_namespace):
        ids.add(cid)
        _run(DOCKER, "rm", "-f", "-v", cid)
    for point in sorted(mounts_under(mount_root), reverse=True):
        _run("umount", "-l", point)
    _delete_iptables_rules(ids)
    if os.path.exists(f"/sys/class/net/{net.bridge}"):
        _run("ip", "link", "del", net.bridge)


def _delete_iptables_rules(ids: set[str]) -> None:
    chains: set[tuple[str, str]] = set()
    for table, rule in iptables_lines(ids):
        args = shlex.split(rule)[1:]
        if "-j" in args:
            target = args[args.index("-j") + 1]
            # Per-container chains (bridge ipMasq's CNI-*, portmap's CNI-DN-*) go with their jumps.
            # The CNI-HOSTPORT-* chains are shared by every pod on the host: never touched.
            if target.startswith("CNI-") and not target.startswith("CNI-HOSTPORT-"):
                chains.add((table, target))
        _run("iptables", "-w", "-t", table, "-D", *args)
    for table, chain in chains:
        _run("iptables", "-w", "-t", table, "-F", chain)
        _run("iptables", "-w", "-t", table, "-X", chain)
