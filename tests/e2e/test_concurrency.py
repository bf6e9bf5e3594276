"""kubelet calls in parallel: 20 concurrent RunPodSandbox calls give 20 ready pods with 20
distinct addresses, and concurrent stop/remove give everything back."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from cri_api import api_pb2
from tests.e2e.conftest import Pods
from tests.e2e.harness import NetworkPlan, Shim, infra_pid, leftovers, netns_addresses, pod_config

pytestmark = pytest.mark.integration


def test_twenty_parallel_pods(shim: Shim, plan: NetworkPlan, pods: Pods) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        ids = list(pool.map(lambda _: pods.add(shim.run_pod(pod_config(), timeout=240)), range(20)))
    assert len(set(ids)) == 20
    statuses = [shim.status(sid).status for sid in ids]
    assert all(s.state == api_pb2.SANDBOX_READY for s in statuses)
    ips = [s.network.ip for s in statuses]
    assert len(set(ips)) == 20 and all(ips)
    for sid, ip in zip(ids, ips, strict=True):
        assert netns_addresses(infra_pid(sid)) == [ip]
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(shim.remove_pod, ids))
    assert shim.list_pods() == []
    assert leftovers(shim, plan, set(ids)).empty()


def test_repeated_run_for_same_pod_returns_same_sandbox(shim: Shim, pods: Pods) -> None:
    """kubelet retries RunPodSandbox after its own timeout; the retry gets the same sandbox."""
    config = pod_config()
    with ThreadPoolExecutor(max_workers=3) as pool:
        ids = set(pool.map(lambda _: pods.add(shim.run_pod(config)), range(3)))
    assert len(ids) == 1
    assert len(shim.list_pods()) == 1
