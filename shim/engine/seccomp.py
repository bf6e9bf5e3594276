"""The seccomp profile of a container or an infra container, as Docker's SecurityOpt.

Both security contexts of the CRI (LinuxContainerSecurityContext and
LinuxSandboxSecurityContext) carry the profile in the same fields, the SecurityProfile
`seccomp` and the older `seccomp_profile_path`; an unset profile is unconfined, which is what
kubelet means by it (without the SeccompDefault feature) and how cri-dockerd reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, Protocol

from cri_api import api_pb2
from shim.errors import InvalidArgumentError


class SeccompSubject(Protocol):
    """The fields of a CRI security context that choose a seccomp profile."""

    @property
    def seccomp(self) -> api_pb2.SecurityProfile: ...
    @property
    def seccomp_profile_path(self) -> str: ...
    @property
    def privileged(self) -> bool: ...
    def HasField(self, field_name: Literal["seccomp"]) -> bool: ...  # protobuf's name


def read_profile(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def seccomp_options(security: SeccompSubject, read_file: Callable[[str], bytes]) -> list[str]:
    """Docker's SecurityOpt for the profile `security` asks for: unset is unconfined."""
    kind, path = _seccomp_choice(security)
    if kind == "unconfined":
        return ["seccomp=unconfined"]
    if kind == "default":
        return []
    try:
        profile = json.loads(read_file(path))
    except (OSError, ValueError) as err:
        raise InvalidArgumentError(f"seccomp profile {path!r} cannot be loaded: {err}") from err
    if security.privileged:
        profile = _without_sethostname_errno(profile)
    return ["seccomp=" + json.dumps(profile, separators=(",", ":"))]


def _seccomp_choice(security: SeccompSubject) -> tuple[str, str]:
    if security.HasField("seccomp"):
        profile = security.seccomp
        if profile.profile_type == api_pb2.SecurityProfile.RuntimeDefault:
            return "default", ""
        if profile.profile_type == api_pb2.SecurityProfile.Unconfined:
            return "unconfined", ""
        if not profile.localhost_ref.startswith("/"):
            raise InvalidArgumentError(
                f"seccomp.localhost_ref {profile.localhost_ref!r} is not an absolute path"
            )
        return "localhost", profile.localhost_ref
    legacy = security.seccomp_profile_path
    if legacy in ("runtime/default", "docker/default"):
        return "default", ""
    if legacy in ("", "unconfined"):
        # Kubernetes' default without SeccompDefault, and cri-dockerd's reading of "unset".
        return "unconfined", ""
    if legacy.startswith("localhost/"):
        return "localhost", legacy.removeprefix("localhost/")
    raise InvalidArgumentError(f"seccomp_profile_path {legacy!r} is not a known profile")


def _without_sethostname_errno(profile: Any) -> Any:
    """Privileged containers may set the hostname even under a profile that forbids it (the
    CRI's validation suite checks this, as cri-dockerd does)."""
    if not isinstance(profile, dict):
        return profile
    syscalls = []
    for rule in profile.get("syscalls") or []:
        names = [n for n in rule.get("names", []) if n != "sethostname"]
        if rule.get("action") == "SCMP_ACT_ERRNO" and names != rule.get("names", []):
            if not names:
                continue
            rule = {**rule, "names": names}
        syscalls.append(rule)
    return {**profile, "syscalls": syscalls}
