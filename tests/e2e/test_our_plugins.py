"""The shim runs pods end to end on our own plugins (netplugins), through the warm worker."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from cri_api import api_pb2
from tests.e2e.conftest import Pods, make_shim
from tests.e2e.harness import (
    POD_NAMESPACE,
    NetworkPlan,
    Shim,
    infra_pid,
    leftovers,
    netns_addresses,
    netns_link_up,
    tool,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def our_shim(plan: NetworkPlan, pods: Pods, our_bin_dir: str) -> Iterator[Shim]:
    yield from make_shim(plan, pods, bin_dirs=[our_bin_dir])


@pytest.mark.skipif(tool("crictl") is None, reason="crictl could not be installed")
def test_crictl_lifecycle_on_our_plugins(
    our_shim: Shim, plan: NetworkPlan, pods: Pods, our_bin_dir: str, tmp_path: os.PathLike[str]
) -> None:
    pod_json = os.path.join(tmp_path, "pod.json")
    with open(pod_json, "w") as f:
        json.dump(
            {
                "metadata": {
                    "name": "ours",
                    "namespace": POD_NAMESPACE,
                    "uid": "ours-uid",
                    "attempt": 0,
                },
                "port_mappings": [{"protocol": 0, "container_port": 80, "host_port": 31481}],
                "linux": {},
            },
            f,
        )
    sandbox_id = pods.add(our_shim.crictl("runp", pod_json).stdout.strip())
    inspect = json.loads(our_shim.crictl("inspectp", sandbox_id).stdout)
    ip = inspect["status"]["network"]["ip"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(plan.subnet)
    pid = infra_pid(sandbox_id)
    assert netns_addresses(pid) == [ip]
    assert netns_link_up(pid, "lo")
    nat = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True
    ).stdout
    assert sandbox_id in nat  # our portmap's and bridge's rules name the container
    # The config names plugins by CNI type; they resolved to our executables.
    assert all(
        os.path.exists(os.path.join(our_bin_dir, t))
        for t in ("bridge", "host-local", "portmap", "loopback")
    )
    # Through the warm worker, every call: a silent fall-back to exec would work as well.
    info = our_shim.runtime().Status(api_pb2.StatusRequest(verbose=True), timeout=10).info
    counts = json.loads(info["cniExecutor"])
    assert counts["fallback"] == 0 and counts["warm"] >= 4, counts
    our_shim.crictl("stopp", sandbox_id)
    our_shim.crictl("rmp", sandbox_id)
    left = leftovers(our_shim, plan, {sandbox_id})
    assert left.empty(), left
