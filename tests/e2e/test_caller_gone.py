"""Calls whose callers have gone acquire nothing more, and an infra container that escaped an
earlier call (a create that timed out after Docker made it) does not block its pod for ever
(issue 10, items 2 and 5)."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import grpc
import pytest

from cri_api import api_pb2
from shim.engine import labels as L
from shim.engine.naming import sandbox_name
from tests.e2e.conftest import Pods, running_shim
from tests.e2e.harness import (
    REFERENCE_PLUGINS,
    NetworkPlan,
    Shim,
    details,
    owned_containers,
    pod_config,
    script_plugins,
)

pytestmark = pytest.mark.integration

# ADD counts itself, takes 3 s, then fails: every attempt is visible and slow.
SLOW_FAIL = """#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}' ;;
ADD) echo add >> "$(dirname "$0")/adds"; sleep 3
     echo '{"cniVersion":"1.0.0","code":7,"msg":"e2e-slowfail: no"}'; exit 1 ;;
esac
exit 0
"""


def test_queued_duplicates_of_a_gone_caller_do_nothing(plan: NetworkPlan, pods: Pods) -> None:
    with (
        script_plugins({"e2e-slowfail": SLOW_FAIL}) as plugin_dir,
        running_shim(plan, pods, bin_dirs=[plugin_dir, REFERENCE_PLUGINS]) as shim,
    ):
        conf = plan.conflist()
        conf["plugins"].insert(1, {"type": "e2e-slowfail"})
        shim.write_conf("10-e2e.conflist", conf)
        config = pod_config()
        codes: list[grpc.StatusCode] = []

        def call() -> None:
            try:
                shim.runtime().RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=2)
            except grpc.RpcError as err:
                codes.append(err.code())

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 4
        time.sleep(8)  # time enough for three more 3 s attempts, had they run
        with open(os.path.join(plugin_dir, "adds")) as f:
            assert f.read().count("add") == 1
        assert shim.list_pods() == []
        assert owned_containers(shim) == []


def test_an_escaped_infra_container_is_replaced(shim: Shim, pods: Pods) -> None:
    config = pod_config()
    meta = config.metadata
    name = sandbox_name(meta.name, meta.namespace, meta.uid, meta.attempt)
    labels = {
        L.POD_NAME: meta.name,
        L.POD_NAMESPACE: meta.namespace,
        L.POD_UID: meta.uid,
        L.ATTEMPT: str(meta.attempt),
        L.SANDBOX: "true",
        L.OWNER: os.path.abspath(shim.root),
    }
    args = [f"--label={k}={v}" for k, v in labels.items()]
    escaped = subprocess.run(
        ["/usr/bin/docker", "create", "--name", name, *args, "registry.k8s.io/pause:3.10"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    sandbox_id = pods.add(shim.run_pod(config))
    assert sandbox_id != escaped
    assert shim.status(sandbox_id).status.state == api_pb2.SANDBOX_READY
    gone = subprocess.run(["/usr/bin/docker", "inspect", escaped], capture_output=True)
    assert gone.returncode != 0


def test_a_foreign_namesake_is_a_conflict(shim: Shim) -> None:
    config = pod_config()
    meta = config.metadata
    name = sandbox_name(meta.name, meta.namespace, meta.uid, meta.attempt)
    foreign = subprocess.run(
        ["/usr/bin/docker", "create", "--name", name, "registry.k8s.io/pause:3.10"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        with pytest.raises(grpc.RpcError) as caught:
            shim.run_pod(config)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert name in details(caught.value)
        assert shim.list_pods() == []
    finally:
        subprocess.run(["/usr/bin/docker", "rm", "-f", foreign], capture_output=True)
