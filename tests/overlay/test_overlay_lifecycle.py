"""Issue 11 proofs 1 (race), 5, 6 and 7: simultaneous starts, join and leave, restart, stale
entries after a restart, and an etcd outage with compaction.

One simulation is shared by the module; each test leaves the nodes it found running converged,
and adds nodes of its own (indexes 4, 5, ...) when it needs a newcomer.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shim.process import stop_process
from tests.overlay.harness import (
    PYTHON,
    REPO,
    VXLAN_CONFIG,
    Node,
    Simulation,
    host_missing,
    new_workdir,
    reachable,
    simulation,
    vxlan_with_pods,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def life_sim() -> Iterator[Simulation]:
    reason = host_missing()
    if reason:
        pytest.skip(reason)
    with vxlan_with_pods() as sim:
        yield sim


def _entries(node: Node, peer: Node) -> dict[str, bool]:
    """Which of the three VXLAN entries for `peer` `node` holds."""
    vtep = node.sim.vtep_name
    return {
        "route": any(r["dst"] == peer.subnet and r.get("dev") == vtep for r in node.routes()),
        "neigh": any(n["dst"] == peer.vtep_ip for n in node.neighbours()),
        "fdb": any(f.get("dst") == peer.public_ip for f in node.fdb()),
    }


def _has_all(node: Node, peer: Node) -> bool:
    return all(_entries(node, peer).values())


def _has_none(node: Node, peer: Node) -> bool:
    return not any(_entries(node, peer).values())


def _key(node: Node) -> str:
    return f"{node.sim.prefix_key}/subnets/{node.subnet.replace('/', '-')}"


class ContinuousPing:
    """A ping every 20 ms from `src_ns` for `seconds`; `result()` waits for its report."""

    def __init__(self, sim: Simulation, src_ns: str, dst_ip: str, seconds: float) -> None:
        self.log = sim.workdir / f"ping-{src_ns}.json"
        args = [dst_ip, "--count", "0", "--deadline", str(seconds), "--interval", "0.02"]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", src_ns, PYTHON, "-m", "tests.overlay.probe", "ping", *args],
            stdout=open(self.log, "w"),  # noqa: SIM115 - the child owns it
            cwd=REPO,
        )
        sim.cleanups.append(self.kill)

    def kill(self) -> None:
        stop_process(self.proc, sig=signal.SIGKILL)

    def result(self, timeout: float = 60) -> dict[str, object]:
        self.proc.wait(timeout=timeout)
        value: dict[str, object] = json.loads(Path(self.log).read_text().splitlines()[-1])
        return value


# -- 1. simultaneous starts --------------------------------------------------------------------


def test_three_simultaneous_starts_on_an_empty_store_give_no_duplicate(host: None) -> None:
    with simulation(new_workdir(), nodes=3, config=VXLAN_CONFIG, start=False) as sim:
        for node in sim.nodes.values():
            node.start(wait=False)
        for node in sim.nodes.values():
            node.wait_ready()
        subnets = [node.subnet for node in sim.nodes.values()]
        assert len(set(subnets)) == 3, subnets
        assert sorted(sim.leases()) == sorted(s.replace("/", "-") for s in subnets)
        for node in sim.nodes.values():
            value, _ = sim.leases()[node.subnet.replace("/", "-")]
            assert value["PublicIP"] == node.public_ip


# -- 6. restart ----------------------------------------------------------------------------------


def test_restart_keeps_lease_mac_and_peers_and_loses_no_ping(life_sim: Simulation) -> None:
    node1, node2 = life_sim.nodes[1], life_sim.nodes[2]
    pod1, pod2 = node1.pods[0], node2.pods[0]
    before = (
        life_sim.leases()[node2.subnet.replace("/", "-")][0],
        node2.vtep(),
        node2.subnet_file.read_text(),
        sorted(map(str, node2.routes())),
        sorted(map(str, node2.neighbours())),
        sorted(map(str, node1.neighbours())),
    )
    ping = ContinuousPing(life_sim, pod1.name, pod2.ip, seconds=5)
    assert node2.restart(signal.SIGTERM) == 0
    result = ping.result()
    assert result["sent"] and result["received"] == result["sent"], result
    vtep = node2.vtep()
    assert before[1] is not None and vtep is not None
    assert vtep["address"] == before[1]["address"], "VTEP MAC changed across the restart"
    after = (
        life_sim.leases()[node2.subnet.replace("/", "-")][0],
        node2.subnet_file.read_text(),
        sorted(map(str, node2.routes())),
        sorted(map(str, node2.neighbours())),
        sorted(map(str, node1.neighbours())),
    )
    assert after == (before[0], *before[2:])


def test_restart_after_the_key_was_deleted_reuses_the_previous_subnet(
    life_sim: Simulation,
) -> None:
    node2 = life_sim.nodes[2]
    subnet = node2.subnet
    node2.stop(signal.SIGTERM)
    life_sim.delete(_key(node2))
    node2.start(*node2.daemon_args)
    assert node2.subnet == subnet
    assert subnet.replace("/", "-") in life_sim.leases()
    life_sim.wait_converged()


def test_stale_entries_of_a_node_that_left_while_the_daemon_was_down_are_removed(
    life_sim: Simulation,
) -> None:
    node1, node2, node3 = (life_sim.nodes[i] for i in (1, 2, 3))
    assert _has_all(node1, node3)
    node1.stop(signal.SIGTERM)
    node3.stop(signal.SIGTERM)
    life_sim.delete(_key(node3))
    node1.start(*node1.daemon_args)
    wait_for("node 1 to drop node 3's entries", lambda: _has_none(node1, node3), timeout=5)
    assert _has_all(node1, node2)
    assert reachable(node1.pods[0].name, node2.pods[0].ip)
    node3.start(*node3.daemon_args)  # back for the tests that follow
    life_sim.wait_converged()


# -- 5. join and leave ---------------------------------------------------------------------------


def test_join_is_learned_within_seconds_and_a_deleted_key_removes_the_node(
    life_sim: Simulation,
) -> None:
    node1, node2 = life_sim.nodes[1], life_sim.nodes[2]
    node4 = life_sim.add_node(4)
    node4.start("--ip-masq")
    took = wait_for(
        "node 1 and node 2 to learn node 4",
        lambda: _has_all(node1, node4) and _has_all(node2, node4),
        timeout=5,
    )
    assert took < 3, f"node 4 learned after {took:.1f}s"
    pod4 = node4.add_pod()
    assert reachable(node1.pods[0].name, pod4.ip)
    assert reachable(pod4.name, node2.pods[0].ip)
    life_sim.delete(_key(node4))
    wait_for("node 4's daemon to exit", lambda: not node4.running(), timeout=10)
    assert node4.stop() not in (0, None), node4.log()
    wait_for(
        "node 1 and node 2 to forget node 4",
        lambda: _has_none(node1, node4) and _has_none(node2, node4),
        timeout=5,
    )


def test_an_expired_lease_removes_the_node_and_its_daemon_exits_non_zero(
    life_sim: Simulation,
) -> None:
    node1 = life_sim.nodes[1]
    node5 = life_sim.add_node(5)
    node5.start("--subnet-lease-ttl", "4")
    wait_for("node 1 to learn node 5", lambda: _has_all(node1, node5), timeout=5)
    # Frozen, the daemon cannot renew: its lease runs out as a dead node's would.
    assert node5.proc is not None
    node5.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for("the lease of node 5 to expire", lambda: _key(node5).rsplit("/", 1)[1]
                 not in life_sim.leases(), timeout=15)  # fmt: skip
        wait_for("node 1 to forget node 5", lambda: _has_none(node1, node5), timeout=5)
    finally:
        node5.proc.send_signal(signal.SIGCONT)
    wait_for("node 5's daemon to notice and exit", lambda: not node5.running(), timeout=10)
    assert node5.stop() not in (0, None), node5.log()


# -- 7. etcd outage ------------------------------------------------------------------------------


def test_etcd_outage_keeps_traffic_and_watches_resume_after_compaction(
    life_sim: Simulation,
) -> None:
    node1, node2, node3 = (life_sim.nodes[i] for i in (1, 2, 3))
    ping = ContinuousPing(life_sim, node1.pods[0].name, node2.pods[0].ip, seconds=8)
    life_sim.stop_etcd()
    # The daemons' way back to etcd stays shut past its restart, so that a node joins and the
    # history is compacted while they are away: their watch revision is gone when they return.
    block = [
        "iptables", "-w", "-I", "INPUT", "-p", "tcp", "--dport", "2379", "-s", "198.18.7.0/29",
        "-j", "REJECT", "--reject-with", "tcp-reset",
    ]  # fmt: skip
    life_sim.cleanups.append(
        lambda: subprocess.run(
            ["ip", "netns", "exec", life_sim.store, *[("-D" if a == "-I" else a) for a in block]],
            capture_output=True,
            check=False,
        )
    )
    subprocess.run(["ip", "netns", "exec", life_sim.store, *block], check=True)
    time.sleep(2)
    assert all(n.running() for n in (node1, node2, node3)), "a daemon gave up on etcd"
    life_sim.start_etcd()
    node6 = life_sim.add_node(9)  # 198.18.7.9: outside the blocked /29
    node6.start("--ip-masq")
    for _ in range(5):
        life_sim.put(f"{life_sim.prefix_key}/churn", "x")
    life_sim.compact()
    subprocess.run(
        ["ip", "netns", "exec", life_sim.store, *[("-D" if a == "-I" else a) for a in block]],
        check=True,
    )
    result = ping.result()
    assert result["sent"] and result["received"] == result["sent"], result
    wait_for(
        "nodes 1-3 to learn node 9 after the outage",
        lambda: all(_has_all(n, node6) for n in (node1, node2, node3)),
        timeout=15,
    )
    pod6 = node6.add_pod()
    assert reachable(node1.pods[0].name, pod6.ip)
    assert all(n.running() for n in (node1, node2, node3))
    # The scenario's premise: the daemons did retry, and did meet the compaction.
    logs = [n.log() for n in (node1, node2, node3)]
    assert all("retrying" in text for text in logs), logs[0]
    assert any("compacted" in text for text in logs), logs[0]


# -- reservations and a changed MTU (issue 11 "where flannel is known to be wrong") ------------


def test_a_reservation_is_taken_and_stays_lease_less(life_sim: Simulation) -> None:
    node1 = life_sim.nodes[1]
    node6 = life_sim.add_node(6)
    key = f"{life_sim.prefix_key}/subnets/10.244.250.0-24"
    reservation = {"PublicIP": node6.public_ip, "PublicIPv6": None}
    life_sim.put(key, json.dumps(reservation))  # no lease: a reservation (reservations.md)
    node6.start("--ip-masq")
    assert node6.subnet == "10.244.250.0/24"
    value, lease_id = life_sim.leases()["10.244.250.0-24"]
    assert lease_id == 0, "the reservation got a lease"
    assert value["PublicIP"] == node6.public_ip and value["BackendType"] == "vxlan"
    wait_for("node 1 to learn node 6", lambda: _has_all(node1, node6), timeout=5)
    node6.restart()
    assert node6.subnet == "10.244.250.0/24"
    assert life_sim.leases()["10.244.250.0-24"][1] == 0, "the restart gave it a lease"


def test_a_changed_mtu_is_applied_at_restart(life_sim: Simulation) -> None:
    node1, node2 = life_sim.nodes[1], life_sim.nodes[2]
    config = {**VXLAN_CONFIG, "Backend": {"Type": "vxlan", "MTU": 1400}}
    life_sim.put_config(config)
    node1.restart()
    vtep = node1.vtep()
    assert vtep is not None and vtep["mtu"] == 1350
    assert node1.subnet_env()["FLANNEL_MTU"] == "1350"
    assert reachable(node1.ns, node2.pods[0].ip, size=1350, df=True)
    life_sim.put_config(VXLAN_CONFIG)
    node1.restart()
    vtep = node1.vtep()
    assert vtep is not None and vtep["mtu"] == 1450
