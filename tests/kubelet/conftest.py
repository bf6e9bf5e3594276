"""Fixtures for the kubelet tests: one cri-shim on our own CNI plugins and a private bridge,
one kubelet v1.34 against it, shared by a whole test module; and a finalizer that takes down
kubelet, every pod it left (through the shim, then by hand) and the host state, even when a
test failed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from cri_api import api_pb2
from tests.e2e.harness import (
    TEST_IMAGE,
    NetworkPlan,
    Shim,
    force_cleanup,
    leftovers,
    new_workdir,
)
from tests.kubelet.harness import (
    REPO,
    Kubelet,
    KubeletPorts,
    delete_chains,
    kubelet_binary,
    kubelet_chains,
    new_kubelet_workdir,
)

LOGS_KEPT = os.path.join(REPO, "build", "kubelet-e2e")
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


def _needs_host() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if subprocess.run(["/usr/bin/docker", "info"], capture_output=True, check=False).returncode:
        return "needs a running Docker engine (make setup starts one)"
    for image in (TEST_IMAGE, PAUSE_IMAGE):
        probe = ["/usr/bin/docker", "image", "inspect", image]
        if subprocess.run(probe, capture_output=True, check=False).returncode:
            return f"needs the image {image} (make pause-image)"
    return None


@pytest.fixture(scope="session")
def kubelet_bin() -> str:
    reason = _needs_host()
    if reason:
        pytest.skip(reason)
    binary = kubelet_binary(build=True)
    if binary is None:
        pytest.skip("kubelet v1.34.4 could not be built (scripts/kubelet-tools.sh, needs Go)")
    return binary


@pytest.fixture(scope="session")
def our_plugins() -> Iterator[str]:
    """Our own CNI plugins (netplugins), installed as executables named by CNI type."""
    directory = new_workdir()
    subprocess.run(
        [sys.executable, "-m", "netplugins", "install", directory], check=True, capture_output=True
    )
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Node:
    """A kubelet and the cri-shim it runs on: what the tests look at."""

    shim: Shim
    kubelet: Kubelet
    plan: NetworkPlan
    sandbox_ids: set[str] = field(default_factory=set)

    def remember_sandboxes(self) -> set[str]:
        """Every sandbox the shim lists now (kept for the leak checks and the clean-up)."""
        ids = {p.id for p in self.shim.list_pods()}
        self.sandbox_ids |= ids
        return ids

    def sandboxes_of(self, name: str) -> list[api_pb2.PodSandbox]:
        """The shim's sandboxes of the static pod from manifest `name`, any state."""
        full = self.kubelet.pod_name(name)
        return [p for p in self.shim.list_pods() if p.metadata.name == full]

    def containers_of(self, name: str, container: str | None = None) -> list[api_pb2.Container]:
        selector = {"io.kubernetes.pod.name": self.kubelet.pod_name(name)}
        if container:
            selector["io.kubernetes.container.name"] = container
        return self.shim.list_containers(label_selector=selector)


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, kubelet_bin: str, our_plugins: str) -> Iterator[Node]:
    """A module may set KUBELET_OVERRIDES (KubeletConfiguration keys, e.g. featureGates) and
    SHIM_ARGS (extra cri-shim flags) for its own node."""
    pid = os.getpid()
    data_dir = new_workdir()
    plan = NetworkPlan(
        bridge=f"crkub{pid % 100000}",
        subnet=f"10.201.{pid % 250}.0/24",
        data_dir=data_dir,
        name="crishim-kubelet",
    )
    shim_dir = new_workdir()
    shim = Shim(shim_dir, [our_plugins], extra_args=list(getattr(request.module, "SHIM_ARGS", [])))
    shim.write_conf("10-kubelet.conflist", plan.conflist())
    chains_before = kubelet_chains()
    kubelet = Kubelet(
        kubelet_bin,
        shim.endpoint,
        new_kubelet_workdir(),
        ports=KubeletPorts(),
        overrides={
            # Scenario 6: rotate at 1 KiB, checked every 3 s (the minimum).
            "containerLogMaxSize": "1Ki",
            "containerLogMaxFiles": 2,
            "containerLogMonitorInterval": "3s",
            **getattr(request.module, "KUBELET_OVERRIDES", {}),
        },
        # Container GC runs once a minute (fixed); these make it collect every dead instance
        # but the newest at once. Deprecated flags, still accepted by 1.34 (and the defaults).
        flags=["--minimum-container-ttl-duration=0s", "--maximum-dead-containers-per-container=1"],
        # CRISHIM_KUBELET_V=10 logs every CRI call kubelet makes ("[RemoteRuntimeService] ...").
        verbosity=int(os.environ.get("CRISHIM_KUBELET_V", "2")),
    )
    node = Node(shim, kubelet, plan)
    try:
        shim.start()
        kubelet.start()
        yield node
    finally:
        teardown(node)
        delete_chains(kubelet_chains() - chains_before)
        shutil.rmtree(shim_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def teardown(node: Node) -> None:
    """kubelet first (so that it restarts nothing), then every pod through the shim, then by
    hand whatever is left, then kubelet's own files and mounts."""
    shim, kubelet = node.shim, node.kubelet
    try:
        kubelet.stop()
    except Exception as err:
        print(f"stopping kubelet failed: {err}")
    try:
        if not shim.running():
            shim.start()
        for sandbox_id in node.remember_sandboxes():
            with contextlib.suppress(grpc.RpcError):
                shim.stop_pod(sandbox_id)
        shim.remove_all()
    except Exception as err:  # keep cleaning by hand below
        print(f"cleanup through the shim failed: {err}\n{shim.log()[-4000:]}")
    finally:
        shim.kill()
        force_cleanup(shim, node.plan, node.sandbox_ids)
        left = leftovers(shim, node.plan, node.sandbox_ids)
        if not left.empty():
            print(f"force-cleaned leftovers: {left}")
        keep_logs(node)
        kubelet.cleanup_host()


def keep_logs(node: Node) -> None:
    """kubelet's and cri-shim's logs of the last run, for a look after a failure."""
    os.makedirs(LOGS_KEPT, exist_ok=True)
    for src, name in ((node.kubelet.log_path, "kubelet.log"), (node.shim.log_path, "shim.log")):
        with contextlib.suppress(OSError):
            shutil.copyfile(src, os.path.join(LOGS_KEPT, name))
