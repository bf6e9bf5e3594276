"""The one exception hierarchy of cnilib.

Every error carries the CNI error triple (`code`, `msg`, `details`) of the spec's
"Error" section, so a runtime can hand a plugin's own diagnosis up unchanged and the
shim can branch on `code` (e.g. 50/51 from STATUS) without parsing text.
"""

from __future__ import annotations

# Well-known codes (CNI spec, "Error" section). libcni adds 999 for its own failures.
CODE_INCOMPATIBLE_VERSION = 1
CODE_UNSUPPORTED_FIELD = 2
CODE_UNKNOWN_CONTAINER = 3
CODE_INVALID_ENVIRONMENT = 4
CODE_IO_FAILURE = 5
CODE_DECODING_FAILURE = 6
CODE_INVALID_NETWORK_CONFIG = 7
CODE_TRY_AGAIN_LATER = 11
CODE_PLUGIN_NOT_AVAILABLE = 50
CODE_PLUGIN_NOT_AVAILABLE_LIMITED = 51
CODE_INTERNAL = 999


class CNIError(Exception):
    """Base of every cnilib error: a CNI error object plus a readable sentence."""

    default_code = CODE_INTERNAL

    def __init__(
        self, msg: str, details: str = "", code: int | None = None, context: str = ""
    ) -> None:
        self.code: int = self.default_code if code is None else code
        self.msg: str = msg
        self.details: str = details
        # What the runtime was doing ("failed to ADD plugin bridge for container x"),
        # kept apart from `msg` so a plugin's own msg reaches the caller verbatim.
        self.context: str = context
        super().__init__(msg)

    def __str__(self) -> str:
        text = ": ".join(part for part in (self.context, self.msg, self.details) if part)
        return f"{text} (CNI error code {self.code})"

    def to_dict(self, cni_version: str = "1.0.0") -> dict[str, object]:
        """The spec's error object, for tools that print errors as a plugin would."""
        return {
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        }


class ConfigError(CNIError):
    """A network configuration was rejected; `source` and `field` say where."""

    default_code = CODE_INVALID_NETWORK_CONFIG

    def __init__(self, source: str, field: str, why: str) -> None:
        self.source = source
        self.field = field
        self.why = why
        where = f" field {field!r}" if field else ""
        super().__init__(f"failed to load network config {source or '<bytes>'}:{where} {why}")


class InvalidArgumentError(CNIError):
    """A runtime argument (container id, interface name) breaks the spec's rules."""

    default_code = CODE_INVALID_ENVIRONMENT


class VersionError(CNIError):
    """No CNI version both this library and every plugin of a list support."""

    default_code = CODE_INCOMPATIBLE_VERSION


class DecodeError(CNIError):
    """A plugin wrote something that is not the JSON the spec requires; quotes it."""

    default_code = CODE_DECODING_FAILURE


class PluginNotFoundError(CNIError):
    """No regular executable file named like the plugin type in the bin dirs."""

    default_code = CODE_INTERNAL


class PluginTimeoutError(CNIError):
    """A plugin ran past its deadline; its whole process group was killed."""

    default_code = CODE_INTERNAL


class PluginError(CNIError):
    """A plugin exited non-zero; code/msg/details are the plugin's own."""


class CacheError(CNIError):
    """The result cache could not be written or removed."""

    default_code = CODE_IO_FAILURE
