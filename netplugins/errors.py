"""The exception hierarchy of netplugins.

Every error a plugin raises ends up on stdout as the CNI error object
(SPEC "Error" section: ``{"cniVersion", "code", "msg", "details"}``) with a non-zero exit.
Codes 1-99 are the spec's well-known codes; 999 is what the reference plugins use for
everything else ("internal"), so runtimes that special-case it keep working.
"""

from __future__ import annotations

from cnilib import errors as _cni

# Well-known error codes, SPEC.md section "Error": the one table is cnilib's, named here the
# way plugin code reads them.
INCOMPATIBLE_VERSION = _cni.CODE_INCOMPATIBLE_VERSION
UNSUPPORTED_FIELD = _cni.CODE_UNSUPPORTED_FIELD
UNKNOWN_CONTAINER = _cni.CODE_UNKNOWN_CONTAINER
INVALID_ENVIRONMENT = _cni.CODE_INVALID_ENVIRONMENT
IO_FAILURE = _cni.CODE_IO_FAILURE
DECODE_FAILURE = _cni.CODE_DECODING_FAILURE
INVALID_CONFIG = _cni.CODE_INVALID_NETWORK_CONFIG
TRY_AGAIN_LATER = _cni.CODE_TRY_AGAIN_LATER
NOT_AVAILABLE = _cni.CODE_PLUGIN_NOT_AVAILABLE
LIMITED_CONNECTIVITY = _cni.CODE_PLUGIN_NOT_AVAILABLE_LIMITED
INTERNAL = _cni.CODE_INTERNAL


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
