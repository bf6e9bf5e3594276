"""Fixtures for the cross-node tests: simulations of nodes in network namespaces (harness.py).

One VXLAN simulation (three nodes, `--ip-masq`, one pod per node) is shared by the tests of a
module that only look at it; tests that stop daemons, etcd or change the config make their own.
Each is closed in the fixture's finalizer, so namespaces, processes and files go even when a
test fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.overlay.harness import VXLAN_CONFIG, Simulation, host_missing, new_workdir, simulation


@pytest.fixture
def host() -> None:
    reason = host_missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def vxlan_sim() -> Iterator[Simulation]:
    reason = host_missing()
    if reason:
        pytest.skip(reason)
    with simulation(new_workdir(), nodes=3, config=VXLAN_CONFIG, daemon_args=("--ip-masq",)) as sim:
        for node in sim.nodes.values():
            node.add_pod()
        yield sim
