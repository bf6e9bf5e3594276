"""Every bad input gets the right gRPC code and a message naming what is wrong."""

from __future__ import annotations

import grpc
import pytest

from cri_api import api_pb2
from tests.e2e.harness import Shim, details, pod_config

pytestmark = pytest.mark.integration


def _meta(**overrides: object) -> api_pb2.PodSandboxMetadata:
    fields: dict[str, object] = {
        "name": "ok",
        "namespace": "crishim-e2e",
        "uid": "u1",
        "attempt": 0,
    }
    fields.update(overrides)
    return api_pb2.PodSandboxMetadata(**fields)  # type: ignore[arg-type]


BAD_CONFIGS = [
    (
        "node-wide sysctl",
        api_pb2.PodSandboxConfig(
            metadata=_meta(), linux=api_pb2.LinuxPodSandboxConfig(sysctls={"vm.swappiness": "1"})
        ),
        "not a namespaced sysctl",
    ),
    (
        "cgroup parent escaping",
        api_pb2.PodSandboxConfig(
            metadata=_meta(), linux=api_pb2.LinuxPodSandboxConfig(cgroup_parent="/../../fzcg")
        ),
        "linux.cgroup_parent",
    ),
    (
        "annotations too big",
        api_pb2.PodSandboxConfig(metadata=_meta(), annotations={"a": "x" * (300 * 1024)}),
        "annotations are",
    ),
    ("no metadata", api_pb2.PodSandboxConfig(), "no metadata"),
    ("empty name", api_pb2.PodSandboxConfig(metadata=_meta(name="")), "metadata.name is empty"),
    ("semicolon", api_pb2.PodSandboxConfig(metadata=_meta(name="a;b")), "metadata.name"),
    ("equals", api_pb2.PodSandboxConfig(metadata=_meta(namespace="a=b")), "metadata.namespace"),
    (
        "uid injection",
        api_pb2.PodSandboxConfig(metadata=_meta(uid="x;K8S_POD_NAME=evil")),
        "metadata.uid",
    ),
    ("too long", api_pb2.PodSandboxConfig(metadata=_meta(name="a" * 300)), "at most 253"),
    (
        "bad port",
        api_pb2.PodSandboxConfig(
            metadata=_meta(), port_mappings=[api_pb2.PortMapping(container_port=0, host_port=80)]
        ),
        "port_mappings[0].container_port",
    ),
    (
        "bad host ip",
        api_pb2.PodSandboxConfig(
            metadata=_meta(),
            port_mappings=[api_pb2.PortMapping(container_port=80, host_port=80, host_ip="nope")],
        ),
        "port_mappings[0].host_ip",
    ),
    (
        "bad dns server",
        api_pb2.PodSandboxConfig(
            metadata=_meta(), dns_config=api_pb2.DNSConfig(servers=["dns.example"])
        ),
        "dns_config.servers",
    ),
    (
        "bad dns option",
        api_pb2.PodSandboxConfig(
            metadata=_meta(), dns_config=api_pb2.DNSConfig(options=["ndots:5\nnameserver 1.2.3.4"])
        ),
        "dns_config.options",
    ),
]


@pytest.mark.parametrize(("case", "config", "needle"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_run_rejects_bad_config(
    shim: Shim, case: str, config: api_pb2.PodSandboxConfig, needle: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        shim.run_pod(config)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in details(caught.value)
    assert shim.list_pods() == []


def test_unknown_runtime_handler(shim: Shim) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        shim.runtime().RunPodSandbox(
            api_pb2.RunPodSandboxRequest(config=pod_config(), runtime_handler="kata"), timeout=30
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "kata" in details(caught.value)


def test_unknown_ids(shim: Shim) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        shim.status("f" * 64)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "f" * 64 in details(caught.value)
    with pytest.raises(grpc.RpcError) as caught:
        shim.status("")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Stop and remove of an unknown sandbox succeed: both are idempotent.
    shim.stop_pod("f" * 64)
    shim.remove_pod("f" * 64)


def test_bad_pod_cidr(shim: Shim) -> None:
    request = api_pb2.UpdateRuntimeConfigRequest(
        runtime_config=api_pb2.RuntimeConfig(
            network_config=api_pb2.NetworkConfig(pod_cidr="10.0.0.0/33")
        )
    )
    with pytest.raises(grpc.RpcError) as caught:
        shim.runtime().UpdateRuntimeConfig(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "10.0.0.0/33" in details(caught.value)


def test_any_cri_name_runs_and_is_reported_exactly(shim: Shim) -> None:
    """critest's names (upper case, long) and other names Docker would refuse: the pod runs
    under a derived Docker name, and status and list report what the caller sent."""
    metadata = _meta(
        name="PodSandbox-for-create-test-0f1e2d3c", namespace="Crishim E2E/ns", uid="a_b c"
    )
    config = pod_config()
    config.metadata.CopyFrom(metadata)
    sandbox_id = shim.run_pod(config)
    try:
        status = shim.status(sandbox_id).status
        assert status.metadata == metadata
        assert status.state == api_pb2.SANDBOX_READY
        listed = {pod.id: pod.metadata for pod in shim.list_pods()}
        assert listed[sandbox_id] == metadata
    finally:
        shim.remove_pod(sandbox_id)
