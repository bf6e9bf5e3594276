"""Fixtures for end-to-end tests of a real cri-shim process over real Docker and CNI plugins.
Each test gets its own shim, socket, bridge, subnet and host-local dir, and everything is
removed in the finalizer even when the test fails."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.e2e.harness import (
    REFERENCE_PLUGINS,
    NetworkPlan,
    Shim,
    new_workdir,
    serve_shim,
)

_subnets = itertools.count(1)


def _needs_host() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if subprocess.run(["/usr/bin/docker", "info"], capture_output=True, check=False).returncode:
        return "needs a running Docker engine (make setup starts one)"
    if not os.path.exists(os.path.join(REFERENCE_PLUGINS, "bridge")):
        return "needs the reference CNI plugins (containernetworking-plugins)"
    return None


@pytest.fixture(scope="session", autouse=True)
def _host_ready() -> None:
    reason = _needs_host()
    if reason:
        pytest.skip(reason)


class Pods:
    """The sandbox ids a test created, so the finalizer can check and clean exactly those."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def add(self, sandbox_id: str) -> str:
        self.ids.add(sandbox_id)
        return sandbox_id


@pytest.fixture
def plan() -> Iterator[NetworkPlan]:
    n = next(_subnets) + (os.getpid() % 50) * 4
    data_dir = new_workdir()
    yield NetworkPlan(
        bridge=f"crst{os.getpid() % 1000}x{n}", subnet=f"10.200.{n % 250}.0/24", data_dir=data_dir
    )
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def pods() -> Pods:
    return Pods()


def make_shim(
    plan: NetworkPlan, pods: Pods, bin_dirs: list[str] | None = None, **kwargs: object
) -> Iterator[Shim]:
    shim = Shim(new_workdir(), bin_dirs or [REFERENCE_PLUGINS], **kwargs)  # type: ignore[arg-type]
    yield from serve_shim(shim, plan, pods.ids)


@pytest.fixture(scope="session")
def our_bin_dir() -> Iterator[str]:
    """Our own plugins (netplugins), installed as executables named by CNI type."""
    directory = new_workdir()
    subprocess.run(
        [sys.executable, "-m", "netplugins", "install", directory], check=True, capture_output=True
    )
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


# For tests that need their own plugins or flags inside the test body: `with running_shim(...)`.
running_shim = contextmanager(make_shim)


@pytest.fixture
def shim(plan: NetworkPlan, pods: Pods) -> Iterator[Shim]:
    yield from make_shim(plan, pods)
