"""Fixtures for the cross-node tests: simulations of nodes in network namespaces (harness.py).

One VXLAN simulation (three nodes, `--ip-masq`, one pod per node) is shared by the tests of a
module that only look at it; tests that stop daemons, etcd or change the config make their own.
Each is closed in the fixture's finalizer, so namespaces, processes and files go even when a
test fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.overlay.harness import Simulation, host_missing, vxlan_with_pods


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
    with vxlan_with_pods() as sim:
        yield sim
