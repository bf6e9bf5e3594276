"""The exception hierarchy of netplugins.

Every error a plugin raises ends up on stdout as the CNI error object
(SPEC "Error" section: ``{"cniVersion", "code", "msg", "details"}``) with a non-zero exit.
Codes 1-99 are the spec's well-known codes; 999 is what the reference plugins use for
everything else ("internal"), so runtimes that special-case it keep working.
"""

from __future__ import annotations

# Well-known error codes, SPEC.md section "Error".
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
INTERNAL = 999


class NetPluginError(Exception):
    """Base of every error a plugin reports; carries the CNI error code."""

    code: int = INTERNAL

    def __init__(self, msg: str, details: str = "", code: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        text = f"{self.msg} (code {self.code})"
        return f"{text}: {self.details}" if self.details else text


class VersionError(NetPluginError):
    code = INCOMPATIBLE_VERSION


class BadEnvironment(NetPluginError):
    code = INVALID_ENVIRONMENT


class DecodeError(NetPluginError):
    code = DECODE_FAILURE


class ConfigError(NetPluginError):
    code = INVALID_CONFIG


class IOFailure(NetPluginError):
    code = IO_FAILURE


class TryAgainError(NetPluginError):
    code = TRY_AGAIN_LATER


class NetlinkFailure(NetPluginError):
    """A netlink request failed; ``msg`` names the object, ``details`` the kernel's answer."""


class IptablesFailure(NetPluginError):
    """An iptables command failed; ``details`` holds its stderr."""


class AddressExhausted(NetPluginError):
    """host-local found no free address in a range set."""


class CheckFailed(NetPluginError):
    """CHECK found the container's state differs from the cached result."""
