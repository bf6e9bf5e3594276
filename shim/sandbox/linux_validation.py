"""Checks on the Linux part of a PodSandboxConfig: sysctls and the cgroup parent.

Refused here, before anything is created, rather than deep inside runc with UNKNOWN:
- a sysctl that is not namespaced would change the whole node (`vm.swappiness`), and one with
  `..` or a newline in its name or value is not a sysctl at all. Only the namespaced ones are
  accepted, as kubelet's own list has them: `kernel.shm*`, `kernel.msg*`, `kernel.sem`,
  `fs.mqueue.*` (IPC namespace) and `net.*` (network namespace) — and neither kind when the
  pod shares that namespace with the node;
- a cgroup parent that climbs out of the hierarchy (`/../../x`) or is relative would leave
  cgroup directories anywhere; with the systemd driver it is a slice name instead.
"""

from __future__ import annotations

import re

from cri_api import api_pb2
from shim.errors import InvalidArgumentError

# kubelet's sysctl name grammar: dot- or slash-separated segments of [a-z0-9_-].
_SYSCTL_NAME = re.compile(r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?")
_IPC_PREFIXES = ("kernel.shm", "kernel.msg", "fs.mqueue.")
_IPC_EXACT = ("kernel.sem",)
_SLICE = re.compile(r"[A-Za-z0-9:_.-]+\.slice")


def check_sysctls(sysctls: dict[str, str], host_network: bool, host_ipc: bool) -> None:
    for name, value in sysctls.items():
        what = f"linux.sysctls[{name!r}]"
        if not _SYSCTL_NAME.fullmatch(name) or ".." in name:
            raise InvalidArgumentError(f"{what}: {name!r} is not a sysctl name")
        if any(c in value for c in "\n\r\x00"):
            raise InvalidArgumentError(f"{what}: the value {value!r} holds a line break or NUL")
        dotted = name.replace("/", ".")
        if dotted.startswith("net."):
            if host_network:
                raise InvalidArgumentError(
                    f"{what}: a pod on the node's network cannot set network sysctls"
                )
        elif dotted in _IPC_EXACT or dotted.startswith(_IPC_PREFIXES):
            if host_ipc:
                raise InvalidArgumentError(
                    f"{what}: a pod sharing the node's IPC namespace cannot set IPC sysctls"
                )
        else:
            raise InvalidArgumentError(
                f"{what}: {name!r} is not a namespaced sysctl (only kernel.shm*, kernel.msg*,"
                " kernel.sem, fs.mqueue.* and net.* are)"
            )


def check_cgroup_parent(parent: str, cgroup_driver: str) -> None:
    if not parent:
        return
    what = f"linux.cgroup_parent {parent!r}"
    if cgroup_driver == "systemd":
        if not _SLICE.fullmatch(parent):
            raise InvalidArgumentError(f"{what} is not a systemd slice name (name.slice)")
        return
    if not parent.startswith("/"):
        raise InvalidArgumentError(f"{what} is not an absolute cgroup path")
    if any(part in (".", "..") for part in parent.split("/")) or "\x00" in parent:
        raise InvalidArgumentError(f"{what} must not contain '.' or '..' components")


def check_linux(config: api_pb2.PodSandboxConfig, cgroup_driver: str) -> None:
    options = config.linux.security_context.namespace_options
    check_sysctls(
        dict(config.linux.sysctls),
        host_network=options.network == api_pb2.NODE,
        host_ipc=options.ipc == api_pb2.NODE,
    )
    check_cgroup_parent(config.linux.cgroup_parent, cgroup_driver)
