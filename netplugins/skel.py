"""The shared plugin skeleton: environment and stdin in, result or coded error out.

Each plugin module declares a :class:`PluginSpec` and its ``main()`` is ``skel.main(PLUGIN)``.
:func:`run` is the pure core (explicit env and stdin, returns exit code and output) so that the
warm worker and in-process delegation can call a plugin without touching the process's
``os.environ`` or standard streams.

Behaviour follows the CNI SPEC (1.1.0, "Parameters" and "Error") and the reference ``skel``:
VERSION needs no environment beyond ``CNI_COMMAND``; CHECK needs cniVersion >= 0.4.0; GC and
STATUS need >= 1.1.0; missing variables are error 4, undecodable stdin error 6; a container id
or interface name that breaks the reference skel's rules is error 4, before anything runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from netplugins import errors
from netplugins.result import SUPPORTED_VERSIONS, convert, version_tuple

log = logging.getLogger(__name__)

# Environment each command needs (reference skel's table; CNI_NETNS is optional for DEL so a
# vanished namespace can still be torn down, SPEC "DEL").
_REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
}


# The reference skel's rules for the runtime-supplied names (libcni utils, SPEC "Parameters"):
# a container id starts alphanumeric and continues with alphanumerics, '_', '.' or '-'; an
# interface name fits IFNAMSIZ (16 bytes with the NUL), is not '.'/'..', and has no '/', ':'
# or whitespace (the kernel's dev_valid_name). Both end up in file names under data dirs.
_CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
MAX_IFNAME_BYTES = 15


def validate_container_id(container_id: str) -> None:
    if not container_id:
        raise errors.NetPluginError("missing containerID", code=errors.UNKNOWN_CONTAINER)
    if not _CONTAINER_ID.fullmatch(container_id):
        raise errors.BadEnvironment("invalid characters in containerID", container_id)


def validate_ifname(ifname: str) -> None:
    if not ifname:
        raise errors.BadEnvironment("interface name is empty")
    if len(os.fsencode(ifname)) > MAX_IFNAME_BYTES:
        raise errors.BadEnvironment(
            "interface name is too long",
            f"interface name should be less than {MAX_IFNAME_BYTES + 1} characters",
        )
    if ifname in (".", ".."):
        raise errors.BadEnvironment("interface name is . or ..")
    if any(ch in "/:" or ch.isspace() for ch in ifname):
        raise errors.BadEnvironment("interface name contains / or : or whitespace characters")


@dataclass(frozen=True)
class CmdArgs:
    """One invocation: the CNI_* environment and the decoded network configuration."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    path: tuple[str, ...]
    stdin: bytes
    netconf: dict[str, Any]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def cni_version(self) -> str:
        return str(self.netconf.get("cniVersion", "0.3.0"))

    def args_pairs(self) -> dict[str, str]:
        """``CNI_ARGS`` as a dict (``k=v;k=v``, SPEC "Parameters"; no escaping exists)."""
        pairs: dict[str, str] = {}
        for item in self.args.split(";"):
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep:
                raise errors.BadEnvironment(f"failed to parse CNI_ARGS item {item!r}: no '='")
            pairs[key] = value
        return pairs


Handler = Callable[[CmdArgs], "dict[str, Any] | None"]


@dataclass(frozen=True)
class PluginSpec:
    """What a plugin module hands to the skeleton."""

    name: str
    add: Handler
    delete: Handler
    check: Handler
    gc: Handler | None = None
    status: Handler | None = None
    about: str = ""


def _error_body(version: str, err: errors.NetPluginError) -> bytes:
    body = {"cniVersion": version, "code": err.code, "msg": err.msg}
    if err.details:
        body["details"] = err.details
    return json.dumps(body).encode() + b"\n"


def _decode(stdin: bytes) -> dict[str, Any]:
    try:
        data = json.loads(stdin or b"{}")
    except ValueError as exc:
        raise errors.DecodeError(
            "failed to decode network configuration from stdin", f"{exc}: {stdin[:200]!r}"
        ) from exc
    if not isinstance(data, dict):
        raise errors.DecodeError("failed to decode network configuration: not a JSON object")
    return data


def _dispatch(spec: PluginSpec, env: Mapping[str, str], stdin: bytes) -> bytes:
    command = env.get("CNI_COMMAND", "")
    if command == "VERSION":
        version = "1.1.0"
        with contextlib.suppress(errors.DecodeError):
            version = str(_decode(stdin).get("cniVersion") or version)
        return json.dumps(
            {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
        ).encode()
    if command not in _REQUIRED_ENV:
        raise errors.BadEnvironment(
            f"failed to run plugin {spec.name}: unknown CNI_COMMAND {command!r}"
        )
    missing = [name for name in _REQUIRED_ENV[command] if not env.get(name)]
    # CNI_PATH may be empty for plugins that delegate nothing, but must be present.
    missing = [n for n in missing if not (n == "CNI_PATH" and n in env)]
    if missing:
        raise errors.BadEnvironment(f"required env variables {missing} missing")
    if "CNI_CONTAINERID" in _REQUIRED_ENV[command]:
        validate_container_id(env["CNI_CONTAINERID"])
    if "CNI_IFNAME" in _REQUIRED_ENV[command]:
        validate_ifname(env["CNI_IFNAME"])
    netconf = _decode(stdin)
    version = str(netconf.get("cniVersion", "0.3.0"))
    if version not in SUPPORTED_VERSIONS:
        raise errors.VersionError(
            f"incompatible CNI versions: config is {version!r}, "
            f"plugin supports {list(SUPPORTED_VERSIONS)}"
        )
    if command == "CHECK" and version_tuple(version) < (0, 4, 0):
        raise errors.VersionError(f"config version {version} does not allow CHECK")
    if command in ("GC", "STATUS") and version_tuple(version) < (1, 1, 0):
        raise errors.VersionError(f"config version {version} does not allow {command}")
    args = CmdArgs(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        args=env.get("CNI_ARGS", ""),
        path=tuple(p for p in env.get("CNI_PATH", "").split(os.pathsep) if p),
        stdin=stdin,
        netconf=netconf,
        env=dict(env),
    )
    handler = {
        "ADD": spec.add,
        "DEL": spec.delete,
        "CHECK": spec.check,
        "GC": spec.gc,
        "STATUS": spec.status,
    }[command]
    if handler is None:  # GC / STATUS without meaning for this plugin: nothing to do.
        return b""
    result = handler(args)
    if command == "ADD":
        if result is None:
            raise errors.NetPluginError(f"plugin {spec.name} produced no result for ADD")
        return json.dumps(convert(result, version)).encode()
    return b""


def run(spec: PluginSpec, env: Mapping[str, str], stdin: bytes) -> tuple[int, bytes, bytes]:
    """Run one command; never raises. Returns (exit code, stdout, stderr)."""
    try:
        return 0, _dispatch(spec, env, stdin), b""
    except errors.NetPluginError as err:
        return 1, _error_body(_version_of(stdin), err), f"{spec.name}: {err}\n".encode()
    except Exception as exc:  # a bug must still produce a spec-shaped error object
        internal = errors.NetPluginError(f"plugin {spec.name} failed: {exc}", type(exc).__name__)
        trace = traceback.format_exc().encode()
        return 1, _error_body(_version_of(stdin), internal), trace


def _version_of(stdin: bytes) -> str:
    try:
        data = json.loads(stdin or b"{}")
        return str(data.get("cniVersion") or "1.1.0") if isinstance(data, dict) else "1.1.0"
    except ValueError:
        return "1.1.0"


def main(spec: PluginSpec) -> NoReturn:
    """Entry point of an installed plugin executable."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    command = os.environ.get("CNI_COMMAND", "")
    stdin = b"" if command == "VERSION" and sys.stdin.isatty() else sys.stdin.buffer.read()
    code, out, diag = run(spec, os.environ, stdin)
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    if diag:
        sys.stderr.buffer.write(diag)
        sys.stderr.buffer.flush()
    sys.exit(code)
