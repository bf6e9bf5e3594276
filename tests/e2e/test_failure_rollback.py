"""A failed RunPodSandbox gives back everything it took, and says why with the plugin's code."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import grpc
import pytest

from cri_api import api_pb2
from tests.e2e.conftest import Pods, make_shim, running_shim
from tests.e2e.harness import (
    REFERENCE_PLUGINS,
    NetworkPlan,
    Shim,
    details,
    leftovers,
    owned_containers,
    pod_config,
    script_plugins,
)

pytestmark = pytest.mark.integration

# Test plugins in shell: VERSION answers like a real plugin, ADD fails (or hangs), DEL succeeds.
FAILING = """#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
ADD) echo '{"cniVersion":"1.0.0","code":7,"msg":"e2e-fail refuses this pod","details":"on purpose"}'
     exit 1 ;;
esac
exit 0
"""
HANGING = """#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
ADD) exec sleep 600 ;;
esac
exit 0
"""


@pytest.fixture
def test_plugins() -> Iterator[str]:
    with script_plugins({"e2e-fail": FAILING, "e2e-hang": HANGING}) as directory:
        yield directory


@pytest.fixture
def failing_shim(plan: NetworkPlan, pods: Pods, test_plugins: str) -> Iterator[Shim]:
    yield from make_shim(plan, pods, bin_dirs=[test_plugins, REFERENCE_PLUGINS], plugin_timeout=2)


@pytest.mark.parametrize("position", [0, 1, 2])
def test_failed_add_at_each_position_leaves_nothing(
    failing_shim: Shim, plan: NetworkPlan, pods: Pods, position: int
) -> None:
    conf = plan.conflist()
    conf["plugins"].insert(position, {"type": "e2e-fail"})
    failing_shim.write_conf("10-e2e.conflist", conf)
    with pytest.raises(grpc.RpcError) as caught:
        failing_shim.run_pod(pod_config())
    err = caught.value
    assert err.code() == grpc.StatusCode.UNKNOWN
    assert "e2e-fail refuses this pod" in details(err)
    assert "code 7" in details(err)
    assert failing_shim.list_pods() == []
    created = _sandbox_ids_in_log(failing_shim)
    pods.ids.update(created)
    assert created, "the shim's log names the infra container it created and removed"
    left = leftovers(failing_shim, plan, created)
    assert left.empty(), left


def test_hanging_plugin_is_killed_after_timeout(
    failing_shim: Shim, plan: NetworkPlan, pods: Pods
) -> None:
    conf = plan.conflist()
    conf["plugins"].insert(1, {"type": "e2e-hang"})
    failing_shim.write_conf("10-e2e.conflist", conf)
    with pytest.raises(grpc.RpcError) as caught:
        failing_shim.run_pod(pod_config())
    assert "timed out" in details(caught.value) or "timeout" in details(caught.value)
    assert failing_shim.list_pods() == []
    created = _sandbox_ids_in_log(failing_shim)
    pods.ids.update(created)
    assert leftovers(failing_shim, plan, created).empty()
    # No plugin process outlives its timeout.
    assert "sleep 600" not in os.popen("ps -eo args").read()


def _sandbox_ids_in_log(shim: Shim) -> set[str]:
    return set(re.findall(r"sandbox ([0-9a-f]{64})", shim.log()))


@pytest.fixture
def missing_image_shim(plan: NetworkPlan, pods: Pods) -> Iterator[Shim]:
    # Nothing can be pulled here: the registry is unreachable, so the pull must fail cleanly.
    yield from make_shim(
        plan, pods, extra_args=["--pod-infra-container-image", "cri-shim.invalid/none:0"]
    )


def test_infra_image_pull_failure_creates_nothing(
    missing_image_shim: Shim, plan: NetworkPlan, pods: Pods
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        missing_image_shim.run_pod(pod_config())
    assert "failed to pull image cri-shim.invalid/none:0" in details(caught.value)
    assert missing_image_shim.list_pods() == []
    assert os.listdir(os.path.join(missing_image_shim.root, "sandboxes")) == []


# ADD fails; DEL also fails while the gate file exists (a plugin that cannot reach its backend).
STUBBORN = """#!/bin/sh
gate="${0%/*}/del-fails"
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
ADD) echo '{"cniVersion":"1.0.0","code":11,"msg":"e2e-stubborn: backend busy"}'; exit 1 ;;
DEL) if [ -e "$gate" ]; then
       echo '{"cniVersion":"1.0.0","code":11,"msg":"e2e-stubborn: cannot release yet"}'; exit 1
     fi ;;
esac
exit 0
"""


def test_failed_undo_keeps_sandbox_for_stop_to_finish(plan: NetworkPlan, pods: Pods) -> None:
    """When the rollback itself fails (DEL refused), the sandbox stays NOTREADY with its
    checkpoint, and a later StopPodSandbox + RemovePodSandbox give everything back."""
    with script_plugins({"e2e-stubborn": STUBBORN}) as plugin_dir:
        gate = os.path.join(plugin_dir, "del-fails")
        open(gate, "w").close()
        with running_shim(plan, pods, bin_dirs=[plugin_dir, REFERENCE_PLUGINS]) as shim:
            conf = plan.conflist()
            conf["plugins"].insert(1, {"type": "e2e-stubborn"})
            shim.write_conf("10-e2e.conflist", conf)
            with pytest.raises(grpc.RpcError) as caught:
                shim.run_pod(pod_config())
            assert "e2e-stubborn: backend busy" in details(caught.value)
            listed = shim.list_pods()
            assert len(listed) == 1 and listed[0].state == api_pb2.SANDBOX_NOTREADY
            sandbox_id = pods.add(listed[0].id)
            # What a retried DEL needs is kept: the pinned namespace and the infra container.
            assert os.path.ismount(os.path.join(shim.root, "netns", sandbox_id))
            assert sandbox_id in owned_containers(shim)
            with pytest.raises(grpc.RpcError) as caught:
                shim.stop_pod(sandbox_id)
            assert "e2e-stubborn: cannot release yet" in details(caught.value)
            assert not leftovers(shim, plan, {sandbox_id}).empty()  # the address is still held

            os.unlink(gate)
            shim.stop_pod(sandbox_id)
            shim.remove_pod(sandbox_id)
            assert shim.list_pods() == []
            left = leftovers(shim, plan, {sandbox_id})
            assert left.empty(), left
