"""ContainerConfig → Docker's create body: tables of CRI inputs and the exact Engine API
fields, and the refusals, with no Docker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cri_api import api_pb2
from shim.container.create import image_name
from shim.container.docker_config import (
    Placement,
    binds,
    command,
    create_body,
    devices,
    namespaces,
    resources,
    security_context,
    user,
)
from shim.errors import InvalidArgumentError

SANDBOX = "s" * 64
PLACEMENT = Placement(
    sandbox_id=SANDBOX,
    image_id="sha256:abc",
    cgroup_parent="/kubepods/pod1",
    sandbox_host_network=False,
    sandbox_host_ipc=False,
    labels={"k": "v"},
)
SC = api_pb2.LinuxContainerSecurityContext
NS = api_pb2.NamespaceOption


def _no_file(path: str) -> bytes:
    raise AssertionError(f"unexpected read of {path}")


def test_whole_body() -> None:
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="app", attempt=1),
        image=api_pb2.ImageSpec(image="sha256:abc"),
        command=["/bin/sh"],
        args=["-c", "echo hi"],
        working_dir="/w",
        envs=[api_pb2.KeyValue(key="A", value="1=2")],
        tty=True,
        stdin=True,
        stop_signal=api_pb2.SIGINT,
    )
    body = create_body(config, PLACEMENT, _no_file)
    assert body["Image"] == "sha256:abc"
    assert (body["Entrypoint"], body["Cmd"]) == (["/bin/sh"], ["-c", "echo hi"])
    assert body["Env"] == ["A=1=2"]
    assert body["WorkingDir"] == "/w"
    assert (body["Tty"], body["OpenStdin"], body["StdinOnce"]) == (True, True, False)
    assert body["StopSignal"] == "SIGINT"
    assert body["Labels"] == {"k": "v"}
    assert body["Healthcheck"] == {"Test": ["NONE"]}
    host = body["HostConfig"]
    assert host["RestartPolicy"] == {"Name": "no"}
    assert host["CgroupParent"] == "/kubepods/pod1"
    assert host["LogConfig"]["Type"] == "json-file"
    assert host["LogConfig"]["Config"]["max-size"]
    assert host["NetworkMode"] == host["IpcMode"] == f"container:{SANDBOX}"
    assert "StopSignal" not in create_body(api_pb2.ContainerConfig(), PLACEMENT, _no_file)


@pytest.mark.parametrize(
    ("cmd", "args", "expected"),
    [
        ([], [], {}),
        (["/x"], [], {"Entrypoint": ["/x"]}),
        ([], ["a"], {"Cmd": ["a"]}),
        (["/x"], ["a", "b"], {"Entrypoint": ["/x"], "Cmd": ["a", "b"]}),
    ],
)
def test_command(cmd: list[str], args: list[str], expected: dict[str, Any]) -> None:
    assert command(api_pb2.ContainerConfig(command=cmd, args=args)) == expected


M = api_pb2.Mount


@pytest.mark.parametrize(
    ("mount", "expected"),
    [
        (M(host_path="/h", container_path="/c"), "/h:/c:rw,rprivate"),
        (M(host_path="/h", container_path="/c", readonly=True), "/h:/c:ro,rprivate"),
        (
            M(host_path="/h", container_path="/c", propagation=api_pb2.PROPAGATION_BIDIRECTIONAL),
            "/h:/c:rw,rshared",
        ),
        (
            M(
                host_path="/h",
                container_path="/c",
                propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER,
            ),
            "/h:/c:rw,rslave",
        ),
        (M(host_path="/h", container_path="/c", selinux_relabel=True), "/h:/c:rw,rprivate,Z"),
    ],
)
def test_binds(mount: api_pb2.Mount, expected: str) -> None:
    assert binds([mount]) == [expected]


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        (M(host_path="/h", container_path="c"), "container_path 'c' is not absolute"),
        (M(host_path="h", container_path="/c"), "host_path 'h' is not absolute"),
        (
            M(host_path="/h", container_path="/c", readonly=True, recursive_read_only=True),
            "recursive read-only",
        ),
        (M(host_path="/a:b", container_path="/c"), "contains ':'"),
        (
            M(host_path="/h", container_path="/c", image=api_pb2.ImageSpec(image="x")),
            "image volumes",
        ),
        (
            M(host_path="/h", container_path="/c", uidMappings=[api_pb2.IDMapping(length=1)]),
            "id-mapped",
        ),
    ],
)
def test_bad_mounts(mount: api_pb2.Mount, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        binds([mount])


def test_devices() -> None:
    dev = api_pb2.Device(host_path="/dev/null", container_path="/dev/x")
    assert devices([dev]) == [
        {"PathOnHost": "/dev/null", "PathInContainer": "/dev/x", "CgroupPermissions": "rwm"}
    ]
    with pytest.raises(InvalidArgumentError, match="permissions 'rwq'"):
        devices([api_pb2.Device(host_path="/dev/a", container_path="/dev/b", permissions="rwq")])


@pytest.mark.parametrize(
    ("options", "placement", "expected"),
    [
        (NS(), PLACEMENT, {"PidMode": f"container:{SANDBOX}"}),
        (NS(pid=api_pb2.CONTAINER), PLACEMENT, {}),
        (NS(pid=api_pb2.NODE), PLACEMENT, {"PidMode": "host"}),
        (NS(pid=api_pb2.TARGET, target_id="t1"), PLACEMENT, {"PidMode": "container:t1"}),
        (
            NS(pid=api_pb2.CONTAINER, network=api_pb2.NODE, ipc=api_pb2.NODE),
            Placement(
                **{**PLACEMENT.__dict__, "sandbox_host_network": True, "sandbox_host_ipc": True}
            ),
            {"UTSMode": "host", "IpcMode": "host"},
        ),
    ],
)
def test_namespaces(
    options: api_pb2.NamespaceOption, placement: Placement, expected: dict[str, str]
) -> None:
    got = namespaces(options, placement)
    base = {"NetworkMode": f"container:{SANDBOX}", "IpcMode": f"container:{SANDBOX}"}
    assert got == {**base, **expected}


def test_target_pid_needs_a_target() -> None:
    with pytest.raises(InvalidArgumentError, match="target_id"):
        namespaces(NS(pid=api_pb2.TARGET), PLACEMENT)


R = api_pb2.LinuxContainerResources


@pytest.mark.parametrize(
    ("res", "negative_ok", "expected"),
    [
        (R(), True, {}),
        (
            R(memory_limit_in_bytes=1 << 30, cpu_shares=512, cpu_quota=50000, cpu_period=100000),
            True,
            {
                "Memory": 1 << 30,
                "MemorySwap": 1 << 30,
                "CpuShares": 512,
                "CpuQuota": 50000,
                "CpuPeriod": 100000,
            },
        ),
        (
            R(memory_limit_in_bytes=100, memory_swap_limit_in_bytes=300),
            True,
            {"Memory": 100, "MemorySwap": 300},
        ),
        (R(cpuset_cpus="0-1", cpuset_mems="0"), True, {"CpusetCpus": "0-1", "CpusetMems": "0"}),
        (R(oom_score_adj=-997), True, {"OomScoreAdj": -997}),
        # This kernel refuses negative scores: Guaranteed pods still run, at 0.
        (R(oom_score_adj=-997), False, {"OomScoreAdj": 0}),
        (R(oom_score_adj=1000), False, {"OomScoreAdj": 1000}),
    ],
)
def test_resources(
    res: api_pb2.LinuxContainerResources, negative_ok: bool, expected: dict[str, Any]
) -> None:
    assert resources(res, negative_ok) == expected


def test_oom_score_range() -> None:
    with pytest.raises(InvalidArgumentError, match="oom_score_adj 1001"):
        resources(R(oom_score_adj=1001), True)


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        (SC(), {}),
        (SC(run_as_user=api_pb2.Int64Value(value=0)), {"User": "0"}),
        (SC(run_as_user=api_pb2.Int64Value(value=1000)), {"User": "1000"}),
        (SC(run_as_username="www-data"), {"User": "www-data"}),
        (
            SC(run_as_user=api_pb2.Int64Value(value=5), run_as_group=api_pb2.Int64Value(value=7)),
            {"User": "5:7"},
        ),
        (
            SC(run_as_username="nobody", run_as_group=api_pb2.Int64Value(value=0)),
            {"User": "nobody:0"},
        ),
    ],
)
def test_user(security: api_pb2.LinuxContainerSecurityContext, expected: dict[str, str]) -> None:
    assert user(security) == expected


def test_group_without_user_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="run_as_group is set without"):
        user(SC(run_as_group=api_pb2.Int64Value(value=7)))


def test_security_context_fields() -> None:
    got = security_context(
        SC(
            privileged=False,
            readonly_rootfs=True,
            supplemental_groups=[5, 6],
            capabilities=api_pb2.Capability(
                add_capabilities=["NET_ADMIN"], drop_capabilities=["ALL"]
            ),
            no_new_privs=True,
            masked_paths=["/proc/kcore"],
            readonly_paths=["/proc/sys"],
            seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.RuntimeDefault),
        ),
        _no_file,
    )
    assert got == {
        "Privileged": False,
        "ReadonlyRootfs": True,
        "GroupAdd": ["5", "6"],
        "CapAdd": ["NET_ADMIN"],
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "MaskedPaths": ["/proc/kcore"],
        "ReadonlyPaths": ["/proc/sys"],
    }


def test_privileged_has_no_masks() -> None:
    got = security_context(SC(privileged=True, masked_paths=["/proc/kcore"]), _no_file)
    assert got["Privileged"] is True
    assert "MaskedPaths" not in got


P = api_pb2.SecurityProfile


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        (SC(), ["seccomp=unconfined"]),
        (SC(seccomp=P(profile_type=P.Unconfined)), ["seccomp=unconfined"]),
        (SC(seccomp=P(profile_type=P.RuntimeDefault)), []),
        (SC(seccomp_profile_path="runtime/default"), []),
        (SC(seccomp_profile_path="docker/default"), []),
        (SC(apparmor=P(profile_type=P.Unconfined)), ["seccomp=unconfined", "apparmor=unconfined"]),
        (
            SC(apparmor=P(profile_type=P.Localhost, localhost_ref="mine")),
            ["seccomp=unconfined", "apparmor=mine"],
        ),
    ],
)
def test_profiles(security: api_pb2.LinuxContainerSecurityContext, expected: list[str]) -> None:
    assert security_context(security, _no_file)["SecurityOpt"] == expected


PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["chmod", "sethostname"], "action": "SCMP_ACT_ERRNO"},
    ],
}


def test_localhost_seccomp_inline_and_privileged_may_set_hostname() -> None:
    def read(path: str) -> bytes:
        assert path == "/etc/profiles/p.json"
        return json.dumps(PROFILE).encode()

    sc = SC(seccomp=P(profile_type=P.Localhost, localhost_ref="/etc/profiles/p.json"))
    (opt,) = security_context(sc, read)["SecurityOpt"]
    assert json.loads(opt.removeprefix("seccomp=")) == PROFILE
    sc.privileged = True
    (opt,) = security_context(sc, read)["SecurityOpt"]
    assert json.loads(opt.removeprefix("seccomp="))["syscalls"] == [
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}
    ]
    legacy = SC(seccomp_profile_path="localhost//etc/profiles/p.json")
    assert security_context(legacy, read)["SecurityOpt"][0].startswith("seccomp={")


def test_unreadable_seccomp_profile() -> None:
    def missing(path: str) -> bytes:
        raise FileNotFoundError(path)

    sc = SC(seccomp=P(profile_type=P.Localhost, localhost_ref="/nope.json"))
    with pytest.raises(InvalidArgumentError, match=r"seccomp profile '/nope\.json'"):
        security_context(sc, missing)


def test_bad_env_key() -> None:
    config = api_pb2.ContainerConfig(envs=[api_pb2.KeyValue(key="A=B", value="x")])
    with pytest.raises(InvalidArgumentError, match="envs\\[0\\]"):
        create_body(config, PLACEMENT, _no_file)


@pytest.mark.parametrize(
    ("image", "user_specified", "tags", "expected"),
    [
        ("busybox:1", "", ["busybox:1"], "busybox:1"),
        ("sha256:abc", "web:2", ["web:2", "web:latest"], "web:2"),  # kubelet's way
        ("sha256:abc", "", ["web:latest"], "web:latest"),
        ("sha256:abc", "", [], "sha256:abc"),
    ],
)
def test_image_name(image: str, user_specified: str, tags: list[str], expected: str) -> None:
    spec = api_pb2.ImageSpec(image=image, user_specified_image=user_specified)
    assert image_name(spec, "sha256:abc", tags) == expected
