"""Issue 11 proof 10: cri-shim on the overlay. The root namespace joins the simulation as one
more node (a veth of the test's own into the fab, 198.18.7.100, bridge `cnish0`); our daemon
there writes its subnet.env to the test's path; a pod started with the real `crictl runp` on a
private cri-shim, whose conf dir holds the seed's flannel conflist pointing at that file and
whose plugins are ours, reaches a pod of a simulated node without NAT, and back.

In the root namespace only the test's own veth, bridge, flannel.1 and FLANNEL-* chains are
touched (the harness refuses to start if any of those already exist) and all are removed after;
the test checks that none is left."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

import pytest

from tests.e2e.harness import Shim, force_cleanup, infra_pid, tool
from tests.overlay.harness import (
    Node,
    Simulation,
    new_workdir,
    root_flannel_state,
    run,
    seen_sources,
    simulation,
)

pytestmark = pytest.mark.integration

# A network of its own: the root namespace may carry 10.244.0.0/16 for someone else one day.
CONFIG = {"Network": "10.245.0.0/16", "Backend": {"Type": "vxlan"}}
ROOT_INDEX = 100
BRIDGE = "cnish0"
POD_NAMESPACE = "crishim-overlay"


@pytest.fixture
def root_sim(host: None) -> Iterator[tuple[Simulation, Node]]:
    if tool("crictl") is None:
        pytest.skip("crictl could not be installed (make test-tools)")
    with simulation(new_workdir(), nodes=1, config=CONFIG, daemon_args=("--ip-masq",)) as sim:
        sim.nodes[1].add_pod()
        root = sim.add_root_node(ROOT_INDEX, BRIDGE)
        yield sim, root
    assert root_flannel_state() == [], "flannel state left in the root namespace"
    links = json.loads(run("ip", "-j", "link", "show").stdout)
    assert not [x["ifname"] for x in links if x["ifname"] in (BRIDGE, root.iface)]


def test_crictl_pod_on_the_root_node_reaches_a_simulated_nodes_pod(
    root_sim: tuple[Simulation, Node],
) -> None:
    sim, root = root_sim
    root.start("--ip-masq")
    sim.wait_converged()
    assert ipaddress.IPv4Network(root.subnet).subnet_of(ipaddress.IPv4Network("10.245.0.0/16"))
    root.write_conflist()  # the seed's conflist, bridge cnish0, subnetFile = root's subnet.env
    shim = Shim(str(root.workdir), bin_dirs=[str(sim.plugin_dir)])
    assert shim.conf_dir == str(root.conf_dir)
    sandbox_ids: set[str] = set()
    try:
        shim.start()
        pod_json = root.workdir / "pod.json"
        pod_json.write_text(
            json.dumps(
                {
                    "metadata": {
                        "name": f"{sim.tag}-pod",
                        "namespace": POD_NAMESPACE,
                        "uid": f"{sim.tag}-uid",
                        "attempt": 0,
                    },
                    "linux": {},
                }
            )
        )
        sandbox_id = shim.crictl("runp", str(pod_json)).stdout.strip()
        sandbox_ids.add(sandbox_id)
        inspect = json.loads(shim.crictl("inspectp", sandbox_id).stdout)
        ip = inspect["status"]["network"]["ip"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(root.subnet)
        # Name the sandbox's netns so the probes can run in it (removed with the simulation).
        cri_ns = f"{sim.tag}-cri"
        run("ip", "netns", "attach", cri_ns, str(infra_pid(sandbox_id)))
        sim.namespaces.append(cri_ns)
        remote = sim.nodes[1].pods[0]
        assert seen_sources(sim, cri_ns, remote.name, remote.ip) == dict.fromkeys(
            ("icmp", "udp", "tcp"), ip
        )
        assert seen_sources(sim, remote.name, cri_ns, ip) == dict.fromkeys(
            ("icmp", "udp", "tcp"), remote.ip
        )
        shim.crictl("stopp", sandbox_id)
        shim.crictl("rmp", sandbox_id)
        sandbox_ids.clear()
    finally:
        if shim.running():
            shim.kill()
        force_cleanup(shim, None, sandbox_ids)
