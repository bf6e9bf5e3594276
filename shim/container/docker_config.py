"""CRI ContainerConfig → the body of Docker's `POST /containers/create`, as pure functions.

One small function per CRI sub-message (namespaces, security context, mounts, devices,
resources), each returning plain dicts in the Engine API's own field names, so the mapping is
tested with tables and no Docker. What Docker cannot honour is refused here, before anything
is created, with INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cri_api import api_pb2
from shim.engine.seccomp import seccomp_options
from shim.errors import InvalidArgumentError

# Docker keeps the container's own output as a bounded journal that cri-shim turns into the
# CRI log file (shim.container.log_follower): big files, few of them, because Docker's
# `logs --follow` has known bugs across json-file rotations (moby#37646, #39235).
JOURNAL_MAX_SIZE = "50m"
JOURNAL_MAX_FILES = "2"

_PROPAGATION = {
    api_pb2.PROPAGATION_PRIVATE: "rprivate",
    api_pb2.PROPAGATION_HOST_TO_CONTAINER: "rslave",
    api_pb2.PROPAGATION_BIDIRECTIONAL: "rshared",
}


@dataclass(frozen=True)
class Placement:
    """Where the container goes: facts of its sandbox and of this host, not of the request."""

    sandbox_id: str
    image_id: str
    cgroup_parent: str  # the sandbox's (already in the form Docker's cgroup driver expects)
    sandbox_host_network: bool
    sandbox_host_ipc: bool
    labels: dict[str, str]
    # The kernel refuses a negative oom_score_adj here (no CAP_SYS_RESOURCE): clamp to 0.
    negative_oom_score_allowed: bool = True


def create_body(
    config: api_pb2.ContainerConfig,
    placement: Placement,
    read_file: Callable[[str], bytes],
) -> dict[str, Any]:
    """The whole create request. `read_file` reads a Localhost seccomp profile (injected so
    this module never touches the filesystem itself)."""
    linux = config.linux
    security = linux.security_context
    host_config: dict[str, Any] = {
        "RestartPolicy": {"Name": "no"},  # kubelet restarts containers, never Docker
        "LogConfig": {
            "Type": "json-file",
            "Config": {"max-size": JOURNAL_MAX_SIZE, "max-file": JOURNAL_MAX_FILES},
        },
        "CgroupParent": placement.cgroup_parent,
        "Binds": binds(config.mounts),
        "Devices": devices(config.devices),
        **namespaces(security.namespace_options, placement),
        **resources(linux.resources, placement.negative_oom_score_allowed),
        **security_context(security, read_file),
    }
    body: dict[str, Any] = {
        "Image": placement.image_id,
        "Env": environment(config.envs),
        "WorkingDir": config.working_dir,
        "Labels": placement.labels,
        "Tty": config.tty,
        "OpenStdin": config.stdin,
        "StdinOnce": config.stdin_once,
        "AttachStdin": config.stdin,
        "AttachStdout": True,
        "AttachStderr": not config.tty,
        # kubelet runs its own probes: Docker's image HEALTHCHECK would only cost CPU.
        "Healthcheck": {"Test": ["NONE"]},
        "HostConfig": host_config,
        **command(config),
        **user(security),
    }
    if config.stop_signal != api_pb2.RUNTIME_DEFAULT:
        body["StopSignal"] = api_pb2.Signal.Name(config.stop_signal)
    return body


def command(config: api_pb2.ContainerConfig) -> dict[str, Any]:
    """Kubernetes' command replaces the image's ENTRYPOINT and args its CMD. Docker drops the
    image's CMD once an Entrypoint is given, which is Kubernetes' rule too."""
    out: dict[str, Any] = {}
    if config.command:
        out["Entrypoint"] = list(config.command)
    if config.args:
        out["Cmd"] = list(config.args)
    return out


def environment(envs: Any) -> list[str]:
    for i, kv in enumerate(envs):
        if not kv.key or "=" in kv.key or "\x00" in kv.key + kv.value:
            raise InvalidArgumentError(
                f"envs[{i}] key {kv.key!r} is not a valid environment variable name"
            )
    return [f"{kv.key}={kv.value}" for kv in envs]


def binds(mounts: Any) -> list[str]:
    """Legacy `Binds` rather than the Mount API: they create a missing host directory, as
    kubelet's hostPath volumes without a type expect (moby#42332)."""
    out = []
    for i, m in enumerate(mounts):
        where = f"mounts[{i}]"
        if not m.container_path.startswith("/"):
            raise InvalidArgumentError(
                f"{where}.container_path {m.container_path!r} is not absolute"
            )
        if m.HasField("image") and m.image.image:
            raise InvalidArgumentError(f"{where}: image volumes are not supported by cri-shim")
        if m.uidMappings or m.gidMappings:
            raise InvalidArgumentError(
                f"{where}: id-mapped mounts are not supported (no user namespaces)"
            )
        if m.recursive_read_only:
            # The CRI allows it only with readonly and private propagation, and only where the
            # runtime advertises it; Docker 20.10's API cannot express it at all.
            raise InvalidArgumentError(
                f"{where}: recursive read-only mounts are not supported by this runtime"
            )
        if not m.host_path.startswith("/"):
            raise InvalidArgumentError(f"{where}.host_path {m.host_path!r} is not absolute")
        for path in (m.host_path, m.container_path):
            if ":" in path or "," in path:
                raise InvalidArgumentError(
                    f"{where}: path {path!r} contains ':' or ',', which a bind cannot carry"
                )
        if m.propagation not in _PROPAGATION:
            raise InvalidArgumentError(f"{where}.propagation {m.propagation} is unknown")
        options = ["ro" if m.readonly else "rw", _PROPAGATION[m.propagation]]
        if m.selinux_relabel:
            options.append("Z")
        out.append(f"{m.host_path}:{m.container_path}:{','.join(options)}")
    return out


def devices(devs: Any) -> list[dict[str, str]]:
    out = []
    for i, d in enumerate(devs):
        if not d.host_path.startswith("/") or not d.container_path.startswith("/"):
            raise InvalidArgumentError(
                f"devices[{i}]: host_path and container_path must be absolute"
            )
        perms = d.permissions or "rwm"
        if set(perms) - set("rwm"):
            raise InvalidArgumentError(f"devices[{i}].permissions {perms!r} is not of r, w, m")
        out.append(
            {
                "PathOnHost": d.host_path,
                "PathInContainer": d.container_path,
                "CgroupPermissions": perms,
            }
        )
    return out


def namespaces(options: api_pb2.NamespaceOption, placement: Placement) -> dict[str, str]:
    """Network and IPC are the sandbox's; UTS follows the network (a pod on the node's network
    has the node's hostname); PID as the namespace options say."""
    sandbox = f"container:{placement.sandbox_id}"
    out = {
        "NetworkMode": sandbox,
        "IpcMode": "host" if placement.sandbox_host_ipc else sandbox,
    }
    if placement.sandbox_host_network:
        out["UTSMode"] = "host"
    if options.pid == api_pb2.NODE:
        out["PidMode"] = "host"
    elif options.pid == api_pb2.POD:
        out["PidMode"] = sandbox
    elif options.pid == api_pb2.TARGET:
        if not options.target_id:
            raise InvalidArgumentError("namespace_options.target_id is empty for a TARGET pid")
        out["PidMode"] = f"container:{options.target_id}"
    if options.userns_options.mode not in (api_pb2.NODE, api_pb2.POD) or (
        options.userns_options.mode == api_pb2.POD and options.userns_options.uids
    ):
        raise InvalidArgumentError("user namespaces are not supported by cri-shim")
    return out


def resources(res: api_pb2.LinuxContainerResources, negative_oom_allowed: bool) -> dict[str, Any]:
    """Memory limit = memory+swap limit (no swap unless kubelet asks for it), CPU shares,
    quota, period, cpusets, OOM score. Zero means "not set" throughout the CRI."""
    out: dict[str, Any] = {}
    if res.memory_limit_in_bytes:
        out["Memory"] = res.memory_limit_in_bytes
        out["MemorySwap"] = res.memory_swap_limit_in_bytes or res.memory_limit_in_bytes
    if res.cpu_shares:
        out["CpuShares"] = res.cpu_shares
    if res.cpu_quota:
        out["CpuQuota"] = res.cpu_quota
    if res.cpu_period:
        out["CpuPeriod"] = res.cpu_period
    if res.cpuset_cpus:
        out["CpusetCpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        out["CpusetMems"] = res.cpuset_mems
    if res.oom_score_adj:
        if not -1000 <= res.oom_score_adj <= 1000:
            raise InvalidArgumentError(
                f"resources.oom_score_adj {res.oom_score_adj} is not within -1000..1000"
            )
        out["OomScoreAdj"] = (
            res.oom_score_adj if negative_oom_allowed else max(0, res.oom_score_adj)
        )
    return out


def user(security: api_pb2.LinuxContainerSecurityContext) -> dict[str, str]:
    """`User` is `uid` or `name`, then `:gid`. A group without a user is refused: Docker
    would take the image's user, which is not what the caller asked for (critest checks)."""
    name = security.run_as_username or (
        str(security.run_as_user.value) if security.HasField("run_as_user") else ""
    )
    if security.HasField("run_as_group"):
        if not name:
            raise InvalidArgumentError(
                "security_context.run_as_group is set without run_as_user or run_as_username"
            )
        name = f"{name}:{security.run_as_group.value}"
    if ":" in security.run_as_username:
        raise InvalidArgumentError(
            f"security_context.run_as_username {security.run_as_username!r} contains ':'"
        )
    return {"User": name} if name else {}


def security_context(
    security: api_pb2.LinuxContainerSecurityContext, read_file: Callable[[str], bytes]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Privileged": security.privileged,
        "ReadonlyRootfs": security.readonly_rootfs,
        "GroupAdd": [str(g) for g in security.supplemental_groups],
        "CapAdd": list(security.capabilities.add_capabilities),
        "CapDrop": list(security.capabilities.drop_capabilities),
    }
    options: list[str] = []
    if security.no_new_privs:
        options.append("no-new-privileges")
    options += seccomp_options(security, read_file)
    options += apparmor_options(security)
    out["SecurityOpt"] = options
    # A privileged container sees everything; an empty list cannot say "unmask" because the
    # CRI cannot tell unset from empty, so Docker's defaults then apply.
    if not security.privileged:
        if security.masked_paths:
            out["MaskedPaths"] = list(security.masked_paths)
        if security.readonly_paths:
            out["ReadonlyPaths"] = list(security.readonly_paths)
    return out


def apparmor_options(security: api_pb2.LinuxContainerSecurityContext) -> list[str]:
    if security.HasField("apparmor"):
        profile = security.apparmor
        if profile.profile_type == api_pb2.SecurityProfile.RuntimeDefault:
            return []
        if profile.profile_type == api_pb2.SecurityProfile.Unconfined:
            return ["apparmor=unconfined"]
        return [f"apparmor={profile.localhost_ref}"]
    legacy = security.apparmor_profile
    if legacy in ("", "runtime/default"):
        return []
    if legacy == "unconfined":
        return ["apparmor=unconfined"]
    return [f"apparmor={legacy.removeprefix('localhost/')}"]
