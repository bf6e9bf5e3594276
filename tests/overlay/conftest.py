"""Fixtures for the cross-node tests: simulations of nodes in network namespaces (harness.py).

One VXLAN simulation (three nodes, `--ip-masq`, one pod per node) is shared by the tests of a
module that only look at it; tests that stop daemons, etcd or change the config make their own.
Each is closed in the fixture's finalizer, so namespaces, processes and files go even when a
test fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.overlay.harness import VXLAN_CONFIG, Simulation, simulation


def host_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not shutil.which("etcd"):
        return "etcd-server could not be installed (no etcd on PATH; scripts/setup-host.sh)"
    return None


def new_workdir() -> Path:
    """Short, so etcd's unix socket path stays far below the 108-byte limit."""
    return Path(tempfile.mkdtemp(prefix="ovl", dir="/tmp"))


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


@pytest.fixture
def workdir(host: None) -> Path:
    return new_workdir()  # Simulation.close() removes it
