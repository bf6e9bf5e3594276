"""What the infra container looks like in Docker: named and labelled so it can be found again,
no network of its own, the pod's hostname, and the OOM score the kernel allows."""

from __future__ import annotations

import json
import subprocess
import time

import grpc
import pytest

from cri_api import api_pb2
from tests.e2e.conftest import Pods
from tests.e2e.harness import POD_NAMESPACE, Shim, container_config, details, pod_config

pytestmark = pytest.mark.integration


def _kernel_allows_negative_oom_score() -> bool:
    probe = subprocess.run(
        ["/bin/sh", "-c", "echo -998 > /proc/self/oom_score_adj"], capture_output=True, check=False
    )
    return probe.returncode == 0


def test_infra_container_shape(shim: Shim, pods: Pods) -> None:
    config = pod_config(labels={"app": "shape"})
    sid = pods.add(shim.run_pod(config))
    inspect = json.loads(
        subprocess.run(
            ["/usr/bin/docker", "inspect", sid], capture_output=True, text=True, check=True
        ).stdout
    )[0]
    meta = config.metadata
    assert inspect["Name"] == f"/k8s_POD_{meta.name}_{POD_NAMESPACE}_{meta.uid}_0"
    labels = inspect["Config"]["Labels"]
    assert labels["io.kubernetes.pod.name"] == meta.name
    assert labels["io.kubernetes.pod.namespace"] == POD_NAMESPACE
    assert labels["io.kubernetes.pod.uid"] == meta.uid
    assert labels["io.kubernetes.docker.type"] == "podsandbox"
    assert labels["app"] == "shape"
    assert inspect["HostConfig"]["NetworkMode"] == "none"
    assert inspect["Config"]["Hostname"] == meta.name
    expected = -998 if _kernel_allows_negative_oom_score() else 0
    assert inspect["HostConfig"]["OomScoreAdj"] == expected
    warnings = [line for line in shim.log().splitlines() if "oom_score_adj" in line]
    assert len(warnings) == (0 if expected == -998 else 1)


def test_status_sees_an_infra_container_killed_behind_its_back(shim: Shim, pods: Pods) -> None:
    """PodSandboxStatus answers from the watcher's view of Docker, not from an inspect per
    call: an infra container killed outside cri-shim must still turn the sandbox NOTREADY,
    in the plain and the verbose answer alike."""
    sid = pods.add(shim.run_pod(pod_config()))
    assert shim.status(sid).status.state == api_pb2.SANDBOX_READY
    subprocess.run(["/usr/bin/docker", "kill", sid], capture_output=True, check=True)
    deadline = time.monotonic() + 10
    while shim.status(sid).status.state != api_pb2.SANDBOX_NOTREADY:
        assert time.monotonic() < deadline, "PodSandboxStatus still READY after the kill"
        time.sleep(0.05)
    verbose = shim.status(sid, verbose=True)
    assert verbose.status.state == api_pb2.SANDBOX_NOTREADY
    assert json.loads(verbose.info["info"])["infraContainer"] == {"exists": True, "running": False}
    # CreateContainer asks the same view: no container joins a dead infra container.
    with pytest.raises(grpc.RpcError) as refused:
        shim.create_container(sid, container_config("late", ["/bin/true"]), pod_config())
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert sid in details(refused.value)


def _infra_seccomp(sandbox_id: str) -> tuple[list[str], str]:
    """The infra container's SecurityOpt in Docker, and the Seccomp mode of its process as the
    kernel reports it (0 none, 2 filter)."""
    inspect = json.loads(
        subprocess.run(
            ["/usr/bin/docker", "inspect", sandbox_id], capture_output=True, text=True, check=True
        ).stdout
    )[0]
    with open(f"/proc/{inspect['State']['Pid']}/status") as f:
        mode = next(line.split()[1] for line in f if line.startswith("Seccomp:"))
    return list(inspect["HostConfig"]["SecurityOpt"] or []), mode


@pytest.mark.parametrize(
    ("profile", "security_opt", "mode"),
    [
        (None, ["seccomp=unconfined"], "0"),  # unset: unconfined, as kubelet means it
        (api_pb2.SecurityProfile.Unconfined, ["seccomp=unconfined"], "0"),
        (api_pb2.SecurityProfile.RuntimeDefault, [], "2"),  # Docker's default profile
    ],
)
def test_the_pods_seccomp_profile_applies_to_its_infra_container(
    shim: Shim, pods: Pods, profile: int | None, security_opt: list[str], mode: str
) -> None:
    config = pod_config()
    if profile is not None:
        config.linux.security_context.seccomp.profile_type = profile  # type: ignore[assignment]
    sid = pods.add(shim.run_pod(config))
    assert _infra_seccomp(sid) == (security_opt, mode)


def test_a_missing_localhost_seccomp_profile_is_refused_before_anything_is_made(
    shim: Shim,
) -> None:
    config = pod_config()
    config.linux.security_context.seccomp.profile_type = api_pb2.SecurityProfile.Localhost
    config.linux.security_context.seccomp.localhost_ref = "/nonexistent/cri-shim-profile.json"
    with pytest.raises(grpc.RpcError) as refused:
        shim.run_pod(config)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "/nonexistent/cri-shim-profile.json" in details(refused.value)
    made = subprocess.run(
        [
            "/usr/bin/docker",
            "ps",
            "-aq",
            "--filter",
            f"label=io.kubernetes.pod.uid={config.metadata.uid}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert made == ""
