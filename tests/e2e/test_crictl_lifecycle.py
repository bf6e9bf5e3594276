"""The issue's "done when", through the real crictl and grpcurl: a pod gets an address from the
configured subnet on eth0 inside its namespace, and stop + remove leave nothing behind."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess

import pytest

from shim import __version__
from tests.e2e.conftest import Pods
from tests.e2e.harness import (
    POD_NAMESPACE,
    NetworkPlan,
    Shim,
    infra_pid,
    leftovers,
    netns_addresses,
    netns_link_up,
    tool,
)

pytestmark = pytest.mark.integration

needs_crictl = pytest.mark.skipif(tool("crictl") is None, reason="crictl could not be installed")


def _pod_json(tmp_path: os.PathLike[str], name: str) -> str:
    path = os.path.join(tmp_path, f"{name}.json")
    with open(path, "w") as f:
        json.dump(
            {
                "metadata": {
                    "name": name,
                    "namespace": POD_NAMESPACE,
                    "uid": f"uid-{name}",
                    "attempt": 1,
                },
                "hostname": name,
                "log_directory": "/tmp",
                "port_mappings": [{"protocol": 0, "container_port": 80, "host_port": 31480}],
                "labels": {"app": name},
                "linux": {},
            },
            f,
        )
    return path


@needs_crictl
def test_crictl_runp_inspectp_stopp_rmp(
    shim: Shim, plan: NetworkPlan, pods: Pods, tmp_path: os.PathLike[str]
) -> None:
    sandbox_id = pods.add(shim.crictl("runp", _pod_json(tmp_path, "web")).stdout.strip())
    assert len(sandbox_id) == 64

    inspect = json.loads(shim.crictl("inspectp", sandbox_id[:13]).stdout)
    status = inspect["status"]
    assert status["state"] == "SANDBOX_READY"
    assert status["metadata"]["name"] == "web"
    ip = status["network"]["ip"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(plan.subnet)
    pid = infra_pid(sandbox_id)
    assert netns_addresses(pid) == [ip]
    assert netns_link_up(pid, "lo")
    info = inspect["info"]  # crictl lifts each JSON value of the info map to the top level
    assert info["cniNetwork"] == plan.name
    assert info["cniConfigFile"].endswith("10-e2e.conflist")
    assert info["netnsPath"].endswith(sandbox_id)

    listed = shim.crictl("pods", "-q").stdout.split()
    assert sandbox_id in listed
    # The host port mapping reached portmap: its DNAT rule names our container.
    assert sandbox_id in shim_nat_rules()

    shim.crictl("stopp", sandbox_id[:13])
    inspect = json.loads(shim.crictl("inspectp", sandbox_id).stdout)
    assert inspect["status"]["state"] == "SANDBOX_NOTREADY"
    shim.crictl("stopp", sandbox_id)  # idempotent
    shim.crictl("rmp", sandbox_id[:13])
    assert shim.crictl("pods", "-q").stdout.split() == []

    left = leftovers(shim, plan, {sandbox_id})
    assert left.empty(), left


@needs_crictl
def test_crictl_info_and_version(shim: Shim) -> None:
    version = shim.crictl("version").stdout
    assert "RuntimeName:  cri-shim" in version
    assert "RuntimeApiVersion:  v1" in version
    info = json.loads(shim.crictl("info").stdout)
    conditions = {c["type"]: c["status"] for c in info["status"]["conditions"]}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}
    assert info["lastCNILoadStatus"] == "OK"
    assert info["cniconfig"]["network"]["name"] == "crishim-e2e"
    docker_driver = subprocess.run(
        ["/usr/bin/docker", "info", "-f", "{{.CgroupDriver}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    runtime_config = shim.crictl("runtime-config").stdout.split()
    assert runtime_config == ["cgroup", "driver:", docker_driver.upper()]


@needs_crictl
def test_crictl_rmp_force_and_unknown(
    shim: Shim, plan: NetworkPlan, pods: Pods, tmp_path: os.PathLike[str]
) -> None:
    sandbox_id = pods.add(shim.crictl("runp", _pod_json(tmp_path, "forced")).stdout.strip())
    refused = shim.crictl("rmp", sandbox_id, check=False)
    assert refused.returncode != 0  # crictl refuses a READY pod without --force
    shim.crictl("rmp", "--force", sandbox_id)
    assert leftovers(shim, plan, {sandbox_id}).empty()
    missing = shim.crictl("inspectp", "0123456789abc", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr + missing.stdout


def test_grpcurl_reflection_and_health(shim: Shim) -> None:
    services = shim.grpcurl("list").stdout.split()
    assert "runtime.v1.RuntimeService" in services
    assert "runtime.v1.ImageService" in services
    assert "grpc.health.v1.Health" in services
    methods = shim.grpcurl("list", "runtime.v1.RuntimeService").stdout.split()
    assert len(methods) == 35
    health = json.loads(shim.grpcurl("grpc.health.v1.Health/Check").stdout)
    assert health["status"] == "SERVING"
    version = json.loads(shim.grpcurl("runtime.v1.RuntimeService/Version").stdout)
    # grpcurl prints the proto field names: our reflection descriptors carry no json_name.
    assert version == {
        "version": "0.1.0",
        "runtime_name": "cri-shim",
        "runtime_version": __version__,
        "runtime_api_version": "v1",
    }
    assert oct(os.stat(shim.socket).st_mode & 0o777) == "0o660"


def test_grpcurl_unimplemented_names_itself(shim: Shim) -> None:
    result = shim.grpcurl("runtime.v1.RuntimeService/CheckpointContainer", check=False)
    assert result.returncode != 0
    assert "Unimplemented" in result.stderr
    assert "runtime.v1.RuntimeService/CheckpointContainer is not implemented" in result.stderr


def test_grpcurl_run_and_remove(shim: Shim, plan: NetworkPlan, pods: Pods) -> None:
    request = {
        "config": {
            "metadata": {
                "name": "curl-pod",
                "namespace": POD_NAMESPACE,
                "uid": "curl-uid",
                "attempt": 0,
            }
        }
    }
    out = shim.grpcurl("runtime.v1.RuntimeService/RunPodSandbox", data=request).stdout
    sandbox_id = pods.add(json.loads(out)["pod_sandbox_id"])
    status = json.loads(
        shim.grpcurl(
            "runtime.v1.RuntimeService/PodSandboxStatus",
            data={"pod_sandbox_id": sandbox_id, "verbose": True},
        ).stdout
    )
    assert status["status"]["state"] == "SANDBOX_READY"
    assert json.loads(status["info"]["info"])["cniResult"]["ips"]
    shim.grpcurl("runtime.v1.RuntimeService/RemovePodSandbox", data={"pod_sandbox_id": sandbox_id})
    assert leftovers(shim, plan, {sandbox_id}).empty()


def shim_nat_rules() -> str:
    return subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True
    ).stdout
