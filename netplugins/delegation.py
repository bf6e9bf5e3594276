"""Calling another plugin from inside a plugin (bridge -> IPAM, flannel -> bridge).

SPEC "Delegated plugins": the delegate is found by ``type`` in CNI_PATH and gets the caller's
environment with CNI_COMMAND possibly changed. When the executable found is one of ours we run it
in this process through :func:`skel.run` (same input, same output, no 150 ms interpreter start);
a foreign binary is exec'd through :mod:`cnilib.delegate`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from netplugins import errors, ipconfig, registry, skel
from netplugins.result import normalize

DELEGATE_TIMEOUT = 60.0


def find_plugin(plugin_type: str, paths: tuple[str, ...]) -> str:
    """cnilib's lookup (first regular executable in CNI_PATH order), as a plugin error."""
    from cnilib.errors import PluginNotFoundError
    from cnilib.invoke import find_plugin as lookup

    try:
        return lookup(plugin_type, paths)
    except PluginNotFoundError as exc:
        raise errors.NetPluginError(exc.msg, exc.details, exc.code) from exc


def _run_ours(plugin_type: str, env: dict[str, str], stdin: bytes) -> bytes:
    code, out, _ = skel.run(registry.load_spec(plugin_type), env, stdin)
    if code == 0:
        return out
    try:
        body = json.loads(out)
        error = errors.NetPluginError(
            str(body["msg"]), str(body.get("details", "")), int(body.get("code", 999))
        )
    except (ValueError, KeyError, TypeError):
        error = errors.NetPluginError(
            f"failed to run delegate {plugin_type}", out[:300].decode(errors="replace")
        )
    raise error


def delegate(
    command: str, plugin_type: str, netconf: dict[str, Any], args: skel.CmdArgs
) -> dict[str, Any] | None:
    """Run ``plugin_type`` with ``command``; the ADD result in 1.x shape, else None."""
    path = find_plugin(plugin_type, args.path)
    env = dict(args.env)
    env["CNI_COMMAND"] = command
    stdin = json.dumps(netconf).encode()
    ours = registry.identify(path)
    if ours is not None:
        out = _run_ours(ours, env, stdin)
        if command != "ADD":
            return None
        try:
            result = json.loads(out)
        except ValueError as exc:
            raise errors.DecodeError(f"failed to decode result of delegate {plugin_type}") from exc
        return normalize(result)
    return _run_foreign(command, plugin_type, stdin, env)


def pass_to_ipam(args: skel.CmdArgs) -> None:
    """GC or STATUS (``args.command``) of a plugin whose only state beyond the netns is its IPAM's.

    SPEC 1.1 "GC" / "STATUS": bridge and ptp keep nothing outside the container's namespace but
    the addresses, so the command goes unchanged to ``ipam.type`` (nothing to do without one).
    """
    ipam_type = str((args.netconf.get("ipam") or {}).get("type") or "")
    if ipam_type:
        delegate(args.command, ipam_type, args.netconf, args)


def gc_masquerade_then_ipam(args: skel.CmdArgs) -> None:
    """GC of bridge / ptp: stale attachments' masquerade rules, then the IPAM's GC.

    SPEC 1.1 "GC": besides addresses, ``ipMasq`` leaves a chain and a POSTROUTING jump per
    container on the host; those of containers missing from ``cni.dev/valid-attachments``
    go (whatever ``ipMasq`` says now: the rules may come from an earlier config).
    """
    name = str(args.netconf.get("name") or "")
    if not name:
        raise errors.ConfigError("failed to garbage collect: missing network 'name'")
    valid = {
        str(a.get("containerID", ""))
        for a in args.netconf.get("cni.dev/valid-attachments") or []
        if isinstance(a, dict)
    }
    ipconfig.gc_masquerade(name, valid)
    pass_to_ipam(args)


def ipam_backed_spec(
    name: str, *, add: skel.Handler, delete: skel.Handler, check: skel.Handler
) -> skel.PluginSpec:
    """The spec of a plugin whose STATUS is its IPAM plugin's (:func:`pass_to_ipam`) and whose
    GC is :func:`gc_masquerade_then_ipam`."""
    return skel.PluginSpec(
        name=name,
        add=add,
        delete=delete,
        check=check,
        gc=gc_masquerade_then_ipam,
        status=pass_to_ipam,
    )


class _InGroupExecutor:
    """Exec a delegate inside our own process group (cnilib's ExecExecutor starts a new session).

    Whoever runs this plugin (a runtime on timeout, the warm worker's client) kills our process
    group; a delegate in the same group dies with us instead of lingering.
    """

    def run(
        self, path: str, env: Mapping[str, str], stdin: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]:
        try:
            proc = subprocess.run(
                [path], input=stdin, env=dict(env), capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            from cnilib.errors import PluginTimeoutError

            raise PluginTimeoutError(
                f"failed to run delegate {path}: timed out after {timeout:g}s"
            ) from exc
        return proc.returncode, proc.stdout, proc.stderr


def _run_foreign(
    command: str, plugin_type: str, stdin: bytes, env: dict[str, str]
) -> dict[str, Any] | None:
    """A foreign binary, exec'd through cnilib.delegate; its error object passes through."""
    from cnilib import delegate as cni_delegate
    from cnilib.errors import CNIError

    run = _InGroupExecutor()
    try:
        if command == "ADD":
            result = cni_delegate.delegate_add(
                plugin_type, stdin, DELEGATE_TIMEOUT, env=env, executor=run
            )
            return normalize(result.to_dict())
        if command == "CHECK":
            cni_delegate.delegate_check(plugin_type, stdin, DELEGATE_TIMEOUT, env=env, executor=run)
        elif command == "DEL":
            cni_delegate.delegate_del(plugin_type, stdin, DELEGATE_TIMEOUT, env=env, executor=run)
        else:  # GC / STATUS (SPEC 1.1): no result, the error object passes through
            from cnilib.invoke import exec_plugin
            from cnilib.invoke import find_plugin as lookup

            paths = [p for p in env.get("CNI_PATH", "").split(os.pathsep) if p]
            exec_plugin(lookup(plugin_type, paths), env, stdin, DELEGATE_TIMEOUT, run)
    except CNIError as exc:
        raise errors.NetPluginError(exc.msg, exc.details, exc.code) from exc
    return None
