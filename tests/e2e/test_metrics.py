"""Prometheus metrics end to end: a private shim serving /metrics on a free loopback port, a
pod lifecycle through the real crictl (with a container that writes to its log), then a
scrape in which every family cri-shim documents (docs/metrics.md) has a non-zero sample;
and RunPodSandbox's step timings in PodSandboxStatus's verbose info."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cri_api import api_pb2
from tests.e2e.conftest import Pods, running_shim
from tests.e2e.harness import (
    POD_NAMESPACE,
    TEST_IMAGE,
    NetworkPlan,
    Shim,
    container_config,
    pod_config,
    tool,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(tool("crictl") is None, reason="crictl is not installed"),
]

# Every family, as scraped (counters with their _total), with what a lifecycle must have
# made non-zero in it.
FAMILIES = [
    "cri_shim_grpc_request_duration_seconds",
    "cri_shim_grpc_request_errors_total",
    "cri_shim_cni_plugin_duration_seconds",
    "cri_shim_cni_plugin_errors_total",
    "cri_shim_sandbox_run_step_duration_seconds",
    "cri_shim_sandboxes",
    "cri_shim_containers",
    "cri_shim_cni_warm_worker_up",
    "cri_shim_cni_warm_worker_children",
    "cri_shim_cni_warm_worker_busy_children",
    "cri_shim_cni_plugin_executions_total",
    "cri_shim_log_follower_lines_written_total",
    "cri_shim_log_follower_lag_seconds",
    "cri_shim_docker_request_duration_seconds",
    "cri_shim_docker_request_errors_total",
    "cri_shim_container_events_total",
    "cri_shim_container_events_subscribers",
    "cri_shim_container_events_dropped_subscribers_total",
]
# Families a healthy lifecycle leaves at zero, each checked otherwise below.
MAY_BE_ZERO = {
    "cri_shim_sandboxes",  # gauges: all gone at the end, checked while the pod exists
    "cri_shim_containers",
    "cri_shim_cni_plugin_errors_total",  # checked with a plugin that fails
    "cri_shim_cni_warm_worker_busy_children",  # busy only during a call
    "cri_shim_container_events_total",  # see test_container_events.py
    "cri_shim_container_events_subscribers",
    "cri_shim_container_events_dropped_subscribers_total",
}


FAILER = "crishim-e2e-failer"
FAILING_POD = "metrics-fail"
# A chained plugin that passes its prevResult on, except for one pod's ADD (its CNI_ARGS
# name the pod): a plugin error on demand, from a foreign (exec'd) binary.
FAILER_SOURCE = """#!{python}
import json, os, sys
command = os.environ.get("CNI_COMMAND")
conf = json.load(sys.stdin) if command != "VERSION" else {{}}
if command == "VERSION":
    print(json.dumps({{"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}}))
elif command == "ADD" and "K8S_POD_NAME={pod}" in os.environ.get("CNI_ARGS", ""):
    print(json.dumps({{"cniVersion": "1.0.0", "code": 999, "msg": "refused by the metrics test"}}))
    sys.exit(1)
elif command == "ADD":
    print(json.dumps(conf["prevResult"]))
"""


def _install_failer(directory: Path) -> None:
    path = directory / FAILER
    path.write_text(FAILER_SOURCE.format(python=sys.executable, pod=FAILING_POD))
    path.chmod(0o755)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """family name → its samples (sample name, labels, value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    families: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        families[name] = [(s.name, dict(s.labels), float(s.value)) for s in family.samples]
    return families


def _write(path: Path, data: object) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_every_family_after_a_pod_lifecycle(
    plan: NetworkPlan, pods: Pods, our_bin_dir: str, tmp_path: Path
) -> None:
    port = free_port()
    failer_dir = tmp_path / "bin"
    failer_dir.mkdir()
    _install_failer(failer_dir)
    plan.extra_plugins = [{"type": FAILER}]
    with running_shim(
        plan,
        pods,
        bin_dirs=[our_bin_dir, str(failer_dir)],
        extra_args=["--metrics-address", f"127.0.0.1:{port}"],
    ) as shim:
        pod_json = _write(
            tmp_path / "pod.json",
            {
                "metadata": {"name": "metrics", "namespace": POD_NAMESPACE, "uid": "uid-metrics"},
                "log_directory": str(tmp_path / "logs"),
                "linux": {},
            },
        )
        ctr_json = _write(
            tmp_path / "ctr.json",
            {
                "metadata": {"name": "talker"},
                "image": {"image": TEST_IMAGE},
                "command": ["/bin/sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done"],
                "log_path": "talker/0.log",
            },
        )
        sandbox_id = pods.add(shim.crictl("runp", pod_json).stdout.strip())
        container_id = shim.crictl("create", sandbox_id, ctr_json, pod_json).stdout.strip()
        shim.crictl("start", container_id)
        _wait_exited(shim, container_id)
        assert "line-5" in shim.crictl("logs", container_id).stdout
        # An RPC error (NOT_FOUND) and a Docker error (an absent image: 404).
        assert shim.crictl("inspectp", "0" * 64, check=False).returncode != 0
        absent = _write(
            tmp_path / "absent.json",
            {"metadata": {"name": "absent"}, "image": {"image": "cri-shim.test/absent:none"}},
        )
        refused = shim.crictl("create", sandbox_id, absent, pod_json, check=False)
        assert refused.returncode != 0
        assert "pull it before creating" in refused.stderr

        info = json.loads(shim.crictl("inspectp", sandbox_id).stdout)["info"]
        steps = [s["step"] for s in info["startupSteps"]]
        assert steps == ["validate", "create", "checkpoint", "start", "pin", "wait_cni_gc",
                         "network"]  # fmt: skip
        assert all(s["seconds"] >= 0 for s in info["startupSteps"])
        assert sum(s["seconds"] for s in info["startupSteps"]) > 0

        during = scrape(port)
        assert _value(during, "cri_shim_sandboxes", state="ready") == 1
        assert _value(during, "cri_shim_containers", state="exited") == 1

        shim.crictl("rm", container_id)
        shim.crictl("stopp", sandbox_id)
        shim.crictl("rmp", sandbox_id)
        _fail_one_plugin_call(shim, tmp_path)

        after = scrape(port)
        missing = [f for f in FAMILIES if f not in after]
        assert not missing, f"families not exported: {missing}"
        zero = [f for f in FAMILIES if f not in MAY_BE_ZERO and not _nonzero(after[f])]
        assert not zero, f"families with no non-zero sample: {zero}"

        rpc = "runtime.v1.RuntimeService"
        assert _value(after, "cri_shim_grpc_request_duration_seconds_count",
                      service=rpc, method="RunPodSandbox") >= 1  # fmt: skip
        assert _value(after, "cri_shim_grpc_request_errors_total",
                      service=rpc, method="PodSandboxStatus", code="NOT_FOUND") >= 1  # fmt: skip
        for command in ("ADD", "DEL"):
            assert _value(after, "cri_shim_cni_plugin_duration_seconds_count",
                          plugin="bridge", command=command) >= 1  # fmt: skip
        assert _value(after, "cri_shim_sandbox_run_step_duration_seconds_count",
                      step="network") >= 1  # fmt: skip
        assert _value(after, "cri_shim_cni_plugin_errors_total",
                      plugin=FAILER, command="ADD") == 1  # fmt: skip
        assert _value(after, "cri_shim_cni_plugin_executions_total", path="warm") >= 1
        assert _value(after, "cri_shim_cni_plugin_executions_total", path="foreign") >= 1
        assert _value(after, "cri_shim_cni_warm_worker_children") >= 1
        assert _value(after, "cri_shim_log_follower_lines_written_total") >= 5
        assert _value(after, "cri_shim_docker_request_duration_seconds_count",
                      operation="POST containers/create") >= 2  # fmt: skip
        assert _value(after, "cri_shim_docker_request_errors_total",
                      operation="GET images/{id}/json", code="404") >= 1  # fmt: skip
        assert _value(after, "cri_shim_sandboxes", state="ready") == 0


def test_bad_metrics_address_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shim.main", "--metrics-address", "127.0.0.1:notaport"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 2
    assert "port 'notaport' is not a number" in out.stderr


def _fail_one_plugin_call(shim: Shim, tmp_path: Path) -> None:
    """A pod whose ADD the last plugin of the chain refuses: the CNI error family counts it,
    and the failed RunPodSandbox gives everything back (its DEL succeeds)."""
    pod_json = _write(
        tmp_path / "pod-fail.json",
        {
            "metadata": {"name": FAILING_POD, "namespace": POD_NAMESPACE, "uid": "uid-fail"},
            "log_directory": str(tmp_path / "logs"),
            "linux": {},
        },
    )
    failed = shim.crictl("runp", pod_json, check=False)
    assert failed.returncode != 0
    assert "refused by the metrics test" in failed.stderr


def _wait_exited(shim: Shim, container_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = json.loads(shim.crictl("inspect", container_id).stdout)["status"]["state"]
        if state == "CONTAINER_EXITED":
            return
        time.sleep(0.2)
    raise AssertionError(f"container {container_id} did not exit")


def _nonzero(samples: list[tuple[str, dict[str, str], float]]) -> bool:
    return any(value > 0 for _, _, value in samples)


def _value(families: dict[str, list[tuple[str, dict[str, str], float]]], sample: str,
           **labels: str) -> float:  # fmt: skip
    family = next((f for f in families if sample.startswith(f)), None)
    assert family is not None, f"no family for {sample}"
    return sum(v for name, got, v in families[family] if name == sample
               and all(got.get(k) == want for k, want in labels.items()))  # fmt: skip


def test_startup_steps_survive_a_restart(shim: Shim, pods: Pods) -> None:
    """The steps are in the checkpoint: a shim killed and started again still shows them."""
    sandbox_id = pods.add(shim.run_pod(pod_config()))
    before = json.loads(shim.status(sandbox_id, verbose=True).info["info"])["startupSteps"]
    assert [s["step"] for s in before][-1] == "network"
    shim.kill()
    shim.start()
    after = json.loads(shim.status(sandbox_id, verbose=True).info["info"])["startupSteps"]
    assert after == before


def test_status_calls_do_not_ask_docker(plan: NetworkPlan, pods: Pods) -> None:
    """kubelet asks PodSandboxStatus and ContainerStatus for every pod on each sync. While the
    watcher follows Docker's events they are answered from cri-shim's own view: Docker's
    request counter, as the metrics show it, does not move however often they are asked
    (an inspect per call waits behind container starts while pods start in bulk)."""
    port = free_port()
    with running_shim(plan, pods, extra_args=["--metrics-address", f"127.0.0.1:{port}"]) as shim:
        config = pod_config()
        sandbox_id = pods.add(shim.run_pod(config))
        container_id = shim.create_container(
            sandbox_id, container_config("quiet", ["/bin/sleep", "600"]), config
        )
        shim.start_container(container_id)
        time.sleep(1)  # the start's own events have been handled

        def docker_requests() -> float:
            return _value(scrape(port), "cri_shim_docker_request_duration_seconds_count")

        before = docker_requests()
        for _ in range(20):
            status = shim.status(sandbox_id)
            assert status.status.state == api_pb2.SANDBOX_READY
            assert [c.state for c in status.containers_statuses] == [api_pb2.CONTAINER_RUNNING]
            assert shim.container_status(container_id).status.state == api_pb2.CONTAINER_RUNNING
        assert docker_requests() == before
        # The verbose answers are the way to make cri-shim ask Docker afresh.
        shim.status(sandbox_id, verbose=True)
        shim.container_status(container_id, verbose=True)
        assert docker_requests() >= before + 2
        shim.remove_all()
