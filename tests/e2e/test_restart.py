"""A shim killed with SIGKILL and started again still knows its pods, their state and IPs,
and can stop and remove them completely."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import threading
import time

import grpc
import pytest

from cri_api import api_pb2
from tests.e2e.conftest import Pods, running_shim
from tests.e2e.harness import (
    REFERENCE_PLUGINS,
    NetworkPlan,
    Shim,
    leftovers,
    pod_config,
    script_plugins,
)

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

    sid = pods.add(shim.run_pod(pod_config()))
    subprocess.run(["/usr/bin/docker", "kill", sid], check=True, capture_output=True)
    assert shim.status(sid).status.state == api_pb2.SANDBOX_NOTREADY
    shim.stop_pod(sid)
    shim.remove_pod(sid)
    assert leftovers(shim, plan, {sid}).empty()


@pytest.mark.parametrize("family", ["reference", "ours"])
def test_restart_after_kill_mid_life_then_gc(
    family: str, plan: NetworkPlan, pods: Pods, our_bin_dir: str
) -> None:
    """Checkpoints lost (a person wiped the root dir) and the pod's namespace gone: GC at
    start-up releases what the pod held. The reference bridge (v1.1.1) cannot remove its
    masquerade rules on a DEL without a namespace, so ipMasq is off for it; our bridge removes
    them by container id, so for ours everything must be gone."""
    if family == "reference":
        plan.bridge_extra["ipMasq"] = False
        bin_dirs = [REFERENCE_PLUGINS]
    else:
        bin_dirs = [our_bin_dir]
    with running_shim(plan, pods, bin_dirs=bin_dirs) as shim:
        sid = pods.add(shim.run_pod(pod_config()))
        _lose_everything_but_the_cni_cache(shim, sid)
        shim.start()
        assert shim.list_pods() == []
        left = leftovers(shim, plan, {sid})
        assert left.empty(), left


def subprocess_run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=False, capture_output=True)


def _lose_everything_but_the_cni_cache(shim: Shim, sandbox_id: str) -> None:
    """The shim dies, its pod's container and namespace go (as after a reboot), and its root
    dir is wiped: only the CNI result cache still knows what the pod held."""
    shim.kill(signal.SIGKILL)
    subprocess_run(["/usr/bin/docker", "rm", "-f", sandbox_id])
    netns_dir = os.path.join(shim.root, "netns")
    for entry in os.listdir(netns_dir):
        subprocess_run(["umount", "-l", os.path.join(netns_dir, entry)])
    shutil.rmtree(shim.root)


def test_uncheckpointed_container_is_adopted_only_by_its_owner(shim: Shim, pods: Pods) -> None:
    """A shim killed between `docker create` and its checkpoint left a labelled container: the
    restarted shim adopts it as NOTREADY so remove can clean it; another shim's is left alone."""

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


SLOW = """#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
ADD) sleep 3; cat >/dev/null; echo '{"cniVersion":"1.0.0"}' ;;
esac
exit 0
"""


def test_sigkill_during_cni_add_then_stop_releases_everything(
    plan: NetworkPlan, pods: Pods
) -> None:
    """The shim dies while the chain's ADD is under way (the bridge already holds an address):
    the restarted shim lists the sandbox NOTREADY, and stop + remove give everything back."""

    with (
        script_plugins({"e2e-slow": SLOW}) as plugin_dir,
        running_shim(plan, pods, bin_dirs=[plugin_dir, REFERENCE_PLUGINS]) as shim,
    ):
        conf = plan.conflist()
        conf["plugins"].insert(1, {"type": "e2e-slow"})
        shim.write_conf("10-e2e.conflist", conf)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                shim.run_pod(pod_config())
            except grpc.RpcError as err:
                errors.append(err)

        caller = threading.Thread(target=run)
        caller.start()
        net_dir = os.path.join(plan.data_dir, plan.name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the bridge holds an address
            if os.path.isdir(net_dir) and any(f.startswith("10.") for f in os.listdir(net_dir)):
                break
            time.sleep(0.05)
        shim.kill(signal.SIGKILL)
        caller.join()
        assert errors, "the RPC cannot have succeeded: its server was killed"

        shim.start()
        listed = shim.list_pods()
        assert len(listed) == 1 and listed[0].state == api_pb2.SANDBOX_NOTREADY
        sandbox_id = pods.add(listed[0].id)
        shim.stop_pod(sandbox_id)
        shim.remove_pod(sandbox_id)
        left = leftovers(shim, plan, {sandbox_id})
        assert left.empty(), left


def test_gc_collects_a_network_renamed_while_down(
    plan: NetworkPlan, pods: Pods, our_bin_dir: str
) -> None:
    """The network a pod was attached to is gone from the conf dir (renamed) when the shim
    starts again: its cached attachments are still collected, from their cached config."""
    with running_shim(plan, pods, bin_dirs=[our_bin_dir]) as shim:
        sid = pods.add(shim.run_pod(pod_config()))
        _lose_everything_but_the_cni_cache(shim, sid)
        renamed = dataclasses.replace(plan, name="crishim-e2e-renamed")
        shim.write_conf("10-e2e.conflist", renamed.conflist())
        shim.start()
        assert shim.list_pods() == []
        left = leftovers(shim, plan, {sid})  # `plan` still names the old network's state
        assert left.empty(), left


def test_lost_checkpoint_leaves_no_pin_and_no_temp_files(
    plan: NetworkPlan, pods: Pods, our_bin_dir: str
) -> None:
    """The checkpoint is lost while the shim is down and the container is gone: start-up
    releases the network (GC), unpins the namespace (no bind mount may outlive its sandbox)
    and sweeps the temporary files that SIGKILLed atomic writes left (issue 10, items 23-24).
    On our plugins: the reference bridge cannot drop its masquerade rules without a netns."""
    with running_shim(plan, pods, bin_dirs=[our_bin_dir]) as shim:
        _lost_checkpoint(shim, plan, pods)


def _lost_checkpoint(shim: Shim, plan: NetworkPlan, pods: Pods) -> None:
    sid = pods.add(shim.run_pod(pod_config()))
    pin = os.path.join(shim.root, "netns", sid)
    assert os.path.ismount(pin)
    shim.kill(signal.SIGKILL)
    subprocess_run(["/usr/bin/docker", "rm", "-f", sid])
    os.unlink(os.path.join(shim.root, "sandboxes", f"{sid}.json"))
    stale = [
        os.path.join(shim.root, "sandboxes", ".tmp-killed"),
        os.path.join(shim.cache_dir, "results", ".tmp-killed"),
    ]
    for path in stale:
        with open(path, "w") as f:
            f.write("{")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    fresh = os.path.join(shim.cache_dir, "results", ".tmp-just-now")
    with open(fresh, "w") as f:
        f.write("{")
    try:
        shim.start()
        assert not os.path.ismount(pin) and not os.path.exists(pin)
        assert not any(os.path.exists(p) for p in stale)
        assert os.path.exists(fresh)  # may belong to a live writer of another runtime
    finally:
        os.unlink(fresh)
    assert shim.list_pods() == []
    left = leftovers(shim, plan, {sid})
    assert left.empty(), left


# ADD records its pid, then waits long: a plugin that outlives the shim that ran it.
LINGERING = """#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}' ;;
ADD) echo $$ > "$(dirname "$0")/add.pid"; sleep 120
     echo '{"cniVersion":"1.0.0","ips":[{"address":"10.200.251.9/24"}]}' ;;
esac
exit 0
"""


def test_plugins_of_a_killed_shim_are_killed_at_start(plan: NetworkPlan, pods: Pods) -> None:
    """A plugin still running for a SIGKILLed shim could finish its ADD after the restarted
    shim's DEL: the successor kills it before recovery and GC (issue 10, item 4)."""
    with (
        script_plugins({"e2e-linger": LINGERING}) as plugin_dir,
        running_shim(plan, pods, bin_dirs=[plugin_dir, REFERENCE_PLUGINS]) as shim,
    ):
        shim.write_conf(
            "10-e2e.conflist",
            {"cniVersion": "1.0.0", "name": "linger", "plugins": [{"type": "e2e-linger"}]},
        )
        caller = threading.Thread(target=lambda: _run_pod_quietly(shim))
        caller.start()
        pid_file = os.path.join(plugin_dir, "add.pid")
        deadline = time.monotonic() + 30
        while not os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(pid_file) as f:
            plugin_pid = int(f.read())
        shim.kill(signal.SIGKILL)
        caller.join()
        assert _alive(plugin_pid)  # it outlived its shim
        shim.start()
        assert not _alive(plugin_pid)
        for pod in shim.list_pods():
            pods.add(pod.id)


def _run_pod_quietly(shim: Shim) -> None:
    with contextlib.suppress(grpc.RpcError):  # its server is killed under it
        shim.run_pod(pod_config())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
