"""Overlay section of `make bench`: pod-to-pod across nodes against the same inside one node.

On the netns simulation of tests/overlay/harness.py (two nodes, our daemon with `--ip-masq`,
pods by our CNI plugins), per backend (VXLAN, host-gw):
- TCP throughput of one stream (a Python sink/source pair, tests/overlay/probe.py; the host has
  no iperf3), pod to pod on one node vs pod to pod across nodes, run in alternating order;
- UDP round-trip time of small datagrams, same two paths;
- for VXLAN, the time from a new node's lease appearing in etcd to the first ICMP reply from
  its flannel.1 to a pod of node 1 (includes the ~0.1 s start-up of the pinging process, so it
  over-states the delay a little).
Targets (issue 11): VXLAN throughput >= 70 % of in-node; a new node reachable in <= 2 s.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.overlay.harness import (
    HOSTGW_CONFIG,
    VXLAN_CONFIG,
    Pod,
    Simulation,
    new_workdir,
    probe,
    simulation,
    wait_for,
)

log = logging.getLogger(__name__)

THROUGHPUT_TARGET = 0.70
JOIN_TARGET_S = 2.0
PORT = 7100


@dataclass
class OverlayBenchConfig:
    seconds: float = 3.0  # per throughput run
    rounds: int = 2  # alternating in-node / cross-node runs per backend
    rtt_count: int = 300
    joins: int = 3


def _throughput(sim: Simulation, src: Pod, dst: Pod, seconds: float) -> float:
    sink = sim.server(dst.name, "tcp-sink", str(PORT), "--timeout", "10")
    code, _ = probe(src.name, "tcp-source", dst.ip, str(PORT), "--seconds", str(seconds))
    wait_for("the sink's report", lambda: bool(sink.events()), timeout=10)
    [report] = sink.close()
    if code != 0:
        raise RuntimeError(f"tcp-source {src.name} -> {dst.ip} failed")
    return float(report["gbit_s"])


def _rtt_us(sim: Simulation, src: Pod, dst: Pod, count: int) -> float:
    server = sim.server(dst.name, "udp-server", str(PORT), "--count", str(count), "--timeout", "10")
    code, result = probe(src.name, "udp-rtt", dst.ip, str(PORT), "--count", str(count))
    server.close()
    if code != 0:
        raise RuntimeError(f"udp-rtt {src.name} -> {dst.ip} failed")
    return float(statistics.median(result["rtt_ms"]) * 1000)


def _paths(sim: Simulation, cfg: OverlayBenchConfig) -> dict[str, Any]:
    node1, node2 = sim.nodes[1], sim.nodes[2]
    a, b, c = node1.add_pod(), node1.add_pod(), node2.add_pod()
    in_node: list[float] = []
    cross: list[float] = []
    for i in range(cfg.rounds):
        # ABBA: drift of the machine falls on both paths alike.
        order = ((in_node, b), (cross, c)) if i % 2 == 0 else ((cross, c), (in_node, b))
        for samples, dst in order:
            samples.append(_throughput(sim, a, dst, cfg.seconds))
    in_gbit, cross_gbit = statistics.median(in_node), statistics.median(cross)
    return {
        "in_node_gbit_s": round(in_gbit, 3),
        "cross_node_gbit_s": round(cross_gbit, 3),
        "throughput_ratio": round(cross_gbit / in_gbit, 3) if in_gbit else None,
        "udp_rtt_p50_us_in_node": round(_rtt_us(sim, a, b, cfg.rtt_count), 1),
        "udp_rtt_p50_us_cross_node": round(_rtt_us(sim, a, c, cfg.rtt_count), 1),
        "mtu": int(node1.subnet_env()["FLANNEL_MTU"]),
    }


def _join_seconds(sim: Simulation, index: int) -> float:
    """Lease in etcd → first reply from the new node's VTEP to a pod of node 1."""
    pod = sim.nodes[1].pods[0]
    known = set(sim.leases())
    appeared: dict[str, float] = {}
    stop = threading.Event()

    def watch_leases() -> None:
        while not stop.is_set():
            new = set(sim.leases()) - known
            if new:
                appeared[new.pop()] = time.time()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_leases, name="lease-watch")
    watcher.start()
    try:
        node = sim.add_node(index)
        node.start("--ip-masq", wait=False)
        wait_for("the new lease", lambda: bool(appeared), timeout=15, interval=0.01)
    finally:
        stop.set()
        watcher.join()
    ((key, t0),) = appeared.items()
    vtep_ip = key.split("-")[0]
    code, result = probe(
        pod.name, "ping", vtep_ip, "--count", "0", "--deadline", "10", "--interval", "0.01",
        "--timeout", "0.05", "--stop-on-reply",
    )  # fmt: skip
    if code != 0 or result["first_reply"] is None:
        raise RuntimeError(f"node {index} ({vtep_ip}) never answered: {result}")
    return float(result["first_reply"]) - t0


def run(cfg: OverlayBenchConfig | None = None) -> dict[str, Any]:
    cfg = cfg or OverlayBenchConfig()
    report: dict[str, Any] = {}
    for backend, config in (("vxlan", VXLAN_CONFIG), ("host-gw", HOSTGW_CONFIG)):
        log.info("overlay bench: %s", backend)
        with simulation(new_workdir(), nodes=2, config=config, daemon_args=("--ip-masq",)) as sim:
            report[backend] = _paths(sim, cfg)
            if backend == "vxlan":
                joins = [_join_seconds(sim, 3 + i) for i in range(cfg.joins)]
                report["join_to_traffic_s"] = [round(j, 3) for j in joins]
    ratio = report["vxlan"]["throughput_ratio"]
    worst_join = max(report["join_to_traffic_s"])
    report["targets"] = {
        "vxlan_throughput_ratio_min": THROUGHPUT_TARGET,
        "join_to_traffic_max_s": JOIN_TARGET_S,
        "vxlan_throughput_met": ratio is not None and ratio >= THROUGHPUT_TARGET,
        "join_met": worst_join <= JOIN_TARGET_S,
    }
    report["config"] = {
        "seconds": cfg.seconds,
        "rounds": cfg.rounds,
        "rtt_count": cfg.rtt_count,
        "joins": cfg.joins,
        "tool": "tests/overlay/probe.py (python TCP sink/source, UDP echo)",
    }
    return report
