"""The spec's rules for runtime-supplied names ("Parameters" section, libcni utils)."""

from __future__ import annotations

from cnilib.conf import NAME_PATTERN
from cnilib.errors import InvalidArgumentError

# Linux IFNAMSIZ is 16 including the terminating NUL.
MAX_IFNAME_LEN = 15


def validate_container_id(container_id: str) -> None:
    if not container_id:
        raise InvalidArgumentError("missing container id")
    if not NAME_PATTERN.fullmatch(container_id):
        raise InvalidArgumentError(
            f"invalid container id {container_id!r}",
            f"must match {NAME_PATTERN.pattern}",
        )


def validate_ifname(ifname: str) -> None:
    if not ifname:
        raise InvalidArgumentError("missing interface name")
    if len(ifname) > MAX_IFNAME_LEN:
        raise InvalidArgumentError(
            f"invalid interface name {ifname!r}", f"longer than {MAX_IFNAME_LEN} characters"
        )
    if ifname in (".", ".."):
        raise InvalidArgumentError(
            f"invalid interface name {ifname!r}", "'.' and '..' are reserved"
        )
    if any(ch in ifname for ch in "/:") or any(ch.isspace() for ch in ifname):
        raise InvalidArgumentError(
            f"invalid interface name {ifname!r}", "contains '/', ':' or whitespace"
        )
