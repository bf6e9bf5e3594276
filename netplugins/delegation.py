"""Calling another plugin from inside a plugin (bridge -> IPAM, flannel -> bridge).

SPEC "Delegated plugins": the delegate is found by ``type`` in CNI_PATH and gets the caller's
environment with CNI_COMMAND possibly changed. When the executable found is one of ours we run it
in this process through :func:`skel.run` (same input, same output, no 150 ms interpreter start);
a foreign binary is exec'd.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from netplugins import errors, registry, skel
from netplugins.result import normalize

DELEGATE_TIMEOUT = 60.0


def find_plugin(plugin_type: str, paths: tuple[str, ...]) -> str:
    if not plugin_type or "/" in plugin_type:
        raise errors.ConfigError(f"failed to find plugin {plugin_type!r}: invalid type")
    for directory in paths:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise errors.ConfigError(
        f"failed to find plugin {plugin_type!r} in path {list(paths)}", code=errors.INTERNAL
    )


def _run(path: str, env: dict[str, str], stdin: bytes) -> tuple[int, bytes, bytes]:
    ours = registry.identify(path)
    if ours is not None:
        return skel.run(registry.load_spec(ours), env, stdin)
    try:
        proc = subprocess.run(
            [path], input=stdin, env=env, capture_output=True, timeout=DELEGATE_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        raise errors.TryAgainError(f"failed to run delegate {path}: timed out") from exc
    except OSError as exc:
        raise errors.IOFailure(f"failed to run delegate {path}", str(exc)) from exc
    return proc.returncode, proc.stdout, proc.stderr


def delegate(
    command: str, plugin_type: str, netconf: dict[str, Any], args: skel.CmdArgs
) -> dict[str, Any] | None:
    """Run ``plugin_type`` with ``command``; the ADD result in 1.x shape, else None."""
    path = find_plugin(plugin_type, args.path)
    env = dict(args.env)
    env["CNI_COMMAND"] = command
    code, out, err = _run(path, env, json.dumps(netconf).encode())
    if code != 0:
        try:
            body = json.loads(out)
            raise errors.NetPluginError(
                str(body.get("msg", "")), str(body.get("details", "")), int(body.get("code", 999))
            )
        except (ValueError, AttributeError, TypeError):
            raise errors.NetPluginError(
                f"failed to {command} delegate {plugin_type}: exit {code}",
                (out + err).decode(errors="replace")[:500],
            ) from None
    if command != "ADD":
        return None
    try:
        result = json.loads(out)
    except ValueError as exc:
        raise errors.DecodeError(
            f"failed to decode result of delegate {plugin_type}", out[:200].decode(errors="replace")
        ) from exc
    if not isinstance(result, dict):
        raise errors.DecodeError(f"failed to decode result of delegate {plugin_type}")
    return normalize(result)
