"""Plugin chain latency: our plugins through the warm worker, our plugins exec'd cold, and the
reference binaries, in the same run (issue 4 "Speed").

The chain is the typical conflist: ``loopback``, ``bridge`` + ``host-local``, ``portmap`` with
one host port, run through cnilib's ``CNIConfig`` (the shim's path) for ADD then DEL on a netns
the bench creates and removes. Modes run in alternating blocks so drift of the shared machine
falls on all of them alike. ``run()`` returns p50/p99 per mode and the ratio warm/reference
(target <= 1.0).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

from bench.stats import ratio, summarize_ms
from cnilib.api import CNIConfig
from cnilib.conf import parse_conf_list
from cnilib.invoke import ExecExecutor, PluginExecutor
from cnilib.types import NetworkConfigList, RuntimeConf
from netplugins.install import install
from netplugins.iptables import IPTables, chain_name
from netplugins.warm import WarmExecutor

log = logging.getLogger("bench.plugins")

REFERENCE_DIR = "/usr/lib/cni"
BRIDGE = "nptbench0"
NETWORK = "npt-bench"
HOST_PORT = 32090


def _conflist(data_dir: str) -> NetworkConfigList:
    conf = {
        "cniVersion": "1.0.0",  # the highest the Debian reference binaries support
        "name": NETWORK,
        "plugins": [
            {"type": "loopback"},
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "hairpinMode": True,
                "ipam": {"type": "host-local", "subnet": "10.202.250.0/24", "dataDir": data_dir},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return parse_conf_list(json.dumps(conf).encode())


@contextlib.contextmanager
def _netns() -> Iterator[str]:
    name = f"npt-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _cleanup(container_ids: list[str]) -> None:
    """Whatever an interrupted run may have left: our DN chains and the bridge."""
    ipt = IPTables(4)
    for cid in container_ids:
        chain = chain_name(NETWORK, cid, "DN-")
        for rule in ipt.rules("nat", "CNI-HOSTPORT-DNAT"):
            if rule[-2:] == ["-j", chain]:
                ipt.delete_rule("nat", "CNI-HOSTPORT-DNAT", rule)
        ipt.delete_chain("nat", chain)
    subprocess.run(["ip", "link", "del", BRIDGE], check=False, capture_output=True)


def _one_chain(cni: CNIConfig, net: NetworkConfigList, netns: str, cid: str) -> tuple[float, float]:
    rt = RuntimeConf(
        container_id=cid,
        netns=netns,
        ifname="eth0",
        args=(("IgnoreUnknown", "1"), ("K8S_POD_NAME", cid)),
        capability_args={
            "portMappings": [{"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}]
        },
    )
    t0 = time.perf_counter()
    cni.add_network_list(net, rt)
    t1 = time.perf_counter()
    cni.del_network_list(net, rt)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def run(iterations: int = 30, cold_iterations: int = 10, block: int = 5) -> dict[str, Any]:
    """Measure the three modes; returns ``{mode: {add, del, chain}, ratio_...}`` in ms."""
    cids: list[str] = []
    with tempfile.TemporaryDirectory(prefix="npt-bench-") as tmp, _netns() as netns:
        ours_dir = os.path.join(tmp, "bin")
        install(ours_dir)
        warm = WarmExecutor()
        warm.start()
        try:
            executors: dict[str, tuple[str, PluginExecutor]] = {
                "warm": (ours_dir, warm),
                "cold": (ours_dir, ExecExecutor()),
                "reference": (REFERENCE_DIR, ExecExecutor()),
            }
            samples: dict[str, dict[str, list[float]]] = {
                m: {"add": [], "del": [], "chain": []} for m in executors
            }
            wanted = {"warm": iterations, "cold": cold_iterations, "reference": iterations}
            configs = {}
            for mode, (bin_dir, executor) in executors.items():
                cni = CNIConfig([bin_dir], os.path.join(tmp, f"cache-{mode}"), executor=executor)
                net = _conflist(os.path.join(tmp, f"ipam-{mode}"))
                configs[mode] = (cni, net)
                cid = f"npt-bench-warmup-{mode}"
                cids.append(cid)
                _one_chain(cni, net, netns, cid)  # VERSION negotiation, page cache, bridge
            while any(len(samples[m]["chain"]) < wanted[m] for m in executors):
                for mode in executors:
                    cni, net = configs[mode]
                    for _ in range(min(block, wanted[mode] - len(samples[mode]["chain"]))):
                        cid = f"npt-bench-{mode}-{len(samples[mode]['chain'])}"
                        cids.append(cid)
                        add, delete = _one_chain(cni, net, netns, cid)
                        samples[mode]["add"].append(add)
                        samples[mode]["del"].append(delete)
                        samples[mode]["chain"].append(add + delete)
        finally:
            warm.stop()
            _cleanup(cids)
    report: dict[str, Any] = {
        "chain": "loopback, bridge+host-local, portmap (ADD then DEL, cnilib CNIConfig)",
    }
    for mode, s in samples.items():
        report[mode] = {k: summarize_ms(v) for k, v in s.items()}
    for what in ("chain", "add", "del"):
        report[f"ratio_warm_over_reference_{what}_p50"] = ratio(
            report["warm"][what]["p50_ms"], report["reference"][what]["p50_ms"]
        )
    report["ratio_cold_over_reference_chain_p50"] = ratio(
        report["cold"]["chain"]["p50_ms"], report["reference"]["chain"]["p50_ms"]
    )
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=2))
