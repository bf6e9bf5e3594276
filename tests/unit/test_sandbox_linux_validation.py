"""Sysctls, cgroup parents and metadata sizes: refused before anything is created."""

from __future__ import annotations

import pytest

from cri_api import api_pb2
from shim.errors import InvalidArgumentError
from shim.sandbox.linux_validation import check_cgroup_parent, check_sysctls
from shim.sandbox.validation import METADATA_LIMIT, validate_sandbox_config


@pytest.mark.parametrize(
    "sysctls",
    [
        {"net.ipv4.ip_unprivileged_port_start": "0"},
        {"net/ipv4/ping_group_range": "0 2147483647"},
        {"kernel.shm_rmid_forced": "1", "kernel.msgmax": "8192", "kernel.sem": "250 32000 32 128"},
        {"fs.mqueue.msg_max": "20"},
        {"net.ipv4.conf.eth0.forwarding": "1"},
    ],
)
def test_namespaced_sysctls_pass(sysctls: dict[str, str]) -> None:
    check_sysctls(sysctls, host_network=False, host_ipc=False)


@pytest.mark.parametrize(
    ("sysctls", "host_network", "host_ipc", "message"),
    [
        ({"vm.swappiness": "10"}, False, False, "not a namespaced sysctl"),
        ({"kernel.hostname": "x"}, False, False, "not a namespaced sysctl"),
        ({"net..ipv4": "1"}, False, False, "not a sysctl name"),
        ({"net.ipv4/../../x": "1"}, False, False, "not a sysctl name"),
        ({"Net.ipv4.x": "1"}, False, False, "not a sysctl name"),
        ({"net.ipv4.ip_forward\n": "1"}, False, False, "not a sysctl name"),
        ({"net.ipv4.ip_forward": "1\nvm.swappiness=1"}, False, False, "line break"),
        ({"net.ipv4.ip_forward": "1"}, True, False, "node's network"),
        ({"kernel.shmmax": "1"}, False, True, "node's IPC"),
    ],
)
def test_bad_sysctls(
    sysctls: dict[str, str], host_network: bool, host_ipc: bool, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        check_sysctls(sysctls, host_network, host_ipc)


@pytest.mark.parametrize(
    ("parent", "driver"),
    [
        ("", "cgroupfs"),
        ("/kubepods/burstable/pod1", "cgroupfs"),
        ("kubepods-pod1.slice", "systemd"),
    ],
)
def test_good_cgroup_parents(parent: str, driver: str) -> None:
    check_cgroup_parent(parent, driver)


@pytest.mark.parametrize(
    ("parent", "driver", "message"),
    [
        ("/../../fzcg", "cgroupfs", "'..' components"),
        ("/kubepods/./x", "cgroupfs", "'..' components"),
        ("kubepods/pod1", "cgroupfs", "not an absolute"),
        ("/kubepods.slice/x", "systemd", "not a systemd slice"),
        ("../x.slice", "systemd", "not a systemd slice"),
    ],
)
def test_bad_cgroup_parents(parent: str, driver: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        check_cgroup_parent(parent, driver)


def test_annotation_size_is_bounded() -> None:
    meta = api_pb2.PodSandboxMetadata(name="p", namespace="n", uid="u")
    ok = api_pb2.PodSandboxConfig(metadata=meta, annotations={"a": "x" * (METADATA_LIMIT - 1)})
    validate_sandbox_config(ok, "")
    big = api_pb2.PodSandboxConfig(metadata=meta, annotations={"a": "x" * METADATA_LIMIT})
    with pytest.raises(InvalidArgumentError, match="annotations are 262145 bytes"):
        validate_sandbox_config(big, "")


def test_sysctls_are_checked_by_the_sandbox_validation() -> None:
    meta = api_pb2.PodSandboxMetadata(name="p", namespace="n", uid="u")
    config = api_pb2.PodSandboxConfig(
        metadata=meta, linux=api_pb2.LinuxPodSandboxConfig(sysctls={"vm.swappiness": "1"})
    )
    with pytest.raises(InvalidArgumentError, match=r"vm\.swappiness"):
        validate_sandbox_config(config, "")
