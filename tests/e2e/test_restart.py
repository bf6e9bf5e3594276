"""A shim killed with SIGKILL and started again still knows its pods, their state and IPs,
and can stop and remove them completely."""

from __future__ import annotations

import signal

import pytest

from cri_api import api_pb2
from tests.e2e.conftest import Pods
from tests.e2e.harness import NetworkPlan, Shim, leftovers, pod_config

pytestmark = pytest.mark.integration


def test_sigkill_restart_keeps_pods_and_cleans_them(
    shim: Shim, plan: NetworkPlan, pods: Pods
) -> None:
    ids = [pods.add(shim.run_pod(pod_config())) for _ in range(3)]
    ips = {sid: shim.status(sid).status.network.ip for sid in ids}
    shim.stop_pod(ids[2])

    shim.kill(signal.SIGKILL)
    shim.start()

    listed = {p.id: p.state for p in shim.list_pods()}
    assert listed == {
        ids[0]: api_pb2.SANDBOX_READY,
        ids[1]: api_pb2.SANDBOX_READY,
        ids[2]: api_pb2.SANDBOX_NOTREADY,
    }
    for sid in ids[:2]:
        assert shim.status(sid).status.network.ip == ips[sid]
    for sid in ids:
        shim.stop_pod(sid)
        shim.remove_pod(sid)
    assert shim.list_pods() == []
    assert leftovers(shim, plan, set(ids)).empty()


def test_stop_after_infra_container_died(shim: Shim, plan: NetworkPlan, pods: Pods) -> None:
    import subprocess

    sid = pods.add(shim.run_pod(pod_config()))
    subprocess.run(["/usr/bin/docker", "kill", sid], check=True, capture_output=True)
    assert shim.status(sid).status.state == api_pb2.SANDBOX_NOTREADY
    shim.stop_pod(sid)
    shim.remove_pod(sid)
    assert leftovers(shim, plan, {sid}).empty()


def test_restart_after_kill_mid_life_then_gc(shim: Shim, plan: NetworkPlan, pods: Pods) -> None:
    """Checkpoints lost (a person wiped the root dir): GC at start-up releases the addresses.
    ipMasq is off here: the reference bridge (v1.1.1) cannot remove its masquerade rules on a DEL
    without a namespace, so this scenario would leave them whatever the runtime does."""
    import os
    import shutil

    plan.bridge_extra["ipMasq"] = False
    shim.write_conf("10-e2e.conflist", plan.conflist())

    sid = pods.add(shim.run_pod(pod_config()))
    shim.kill(signal.SIGKILL)
    subprocess_run(["/usr/bin/docker", "rm", "-f", sid])
    netns_dir = os.path.join(shim.root, "netns")
    for entry in os.listdir(netns_dir):
        subprocess_run(["umount", "-l", os.path.join(netns_dir, entry)])
    shutil.rmtree(shim.root)
    shim.start()
    assert shim.list_pods() == []
    left = leftovers(shim, plan, {sid})
    assert left.reservations == [] and left.cache_files == [] and left.iptables_lines == []


def subprocess_run(cmd: list[str]) -> None:
    import subprocess

    subprocess.run(cmd, check=False, capture_output=True)


def test_uncheckpointed_container_is_adopted_only_by_its_owner(shim: Shim, pods: Pods) -> None:
    """A shim killed between `docker create` and its checkpoint left a labelled container: the
    restarted shim adopts it as NOTREADY so remove can clean it; another shim's is left alone."""
    import os
    import subprocess

    def create(owner: str, name: str) -> str:
        out = subprocess.run(
            [
                "/usr/bin/docker",
                "create",
                "--network",
                "none",
                "--name",
                name,
                "--label",
                "io.cri-shim.sandbox=true",
                "--label",
                f"io.cri-shim.root={owner}",
                "--label",
                "io.kubernetes.pod.name=orphan",
                "--label",
                "io.kubernetes.pod.namespace=crishim-e2e",
                "--label",
                "io.kubernetes.pod.uid=orphan-uid",
                "registry.k8s.io/pause:3.10",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return pods.add(out.stdout.strip())

    suffix = os.path.basename(shim.workdir)
    mine = create(os.path.abspath(shim.root), f"crishim-e2e-orphan-{suffix}")
    foreign = create("/elsewhere", f"crishim-e2e-foreign-{suffix}")
    shim.kill(signal.SIGKILL)
    shim.start()
    listed = {p.id: p for p in shim.list_pods()}
    assert set(listed) == {mine}
    assert listed[mine].state == api_pb2.SANDBOX_NOTREADY
    assert listed[mine].metadata.name == "orphan"
    shim.remove_pod(mine)
    gone = subprocess.run(["/usr/bin/docker", "inspect", mine], capture_output=True, check=False)
    assert gone.returncode != 0
    subprocess.run(["/usr/bin/docker", "rm", "-f", foreign], capture_output=True, check=True)
