"""Delegation: one plugin calling another from inside its own process (SPEC "Delegated plugins").

A plugin such as bridge hands IPAM to the plugin named in ``ipam.type``; flannel hands the whole
network to its ``delegate``. The delegate is found by type in ``CNI_PATH``, gets the calling
plugin's environment with only ``CNI_COMMAND`` changed, and the same stdin conventions; its error
object is re-raised unchanged so the runtime sees the delegate's own code and msg (libcni's
``invoke.DelegateAdd`` / ``DelegateCheck`` / ``DelegateDel``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cnilib.invoke import PluginExecutor, exec_plugin, find_plugin
from cnilib.types import Result

DEFAULT_TIMEOUT = 60.0


def _delegate_env(command: str, env: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(os.environ if env is None else env)
    out["CNI_COMMAND"] = command
    return out


def _run(
    command: str,
    plugin_type: str,
    netconf: bytes,
    timeout: float,
    env: Mapping[str, str] | None,
    executor: PluginExecutor | None,
) -> bytes:
    delegate_env = _delegate_env(command, env)
    paths = [p for p in delegate_env.get("CNI_PATH", "").split(os.pathsep) if p]
    path = find_plugin(plugin_type, paths)
    return exec_plugin(path, delegate_env, netconf, timeout, executor=executor)


def delegate_add(
    plugin_type: str,
    netconf: bytes,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    env: Mapping[str, str] | None = None,
    executor: PluginExecutor | None = None,
) -> Result:
    """ADD through ``plugin_type``; the delegate's parsed result."""
    return Result.from_json(_run("ADD", plugin_type, netconf, timeout, env, executor))


def delegate_check(
    plugin_type: str,
    netconf: bytes,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    env: Mapping[str, str] | None = None,
    executor: PluginExecutor | None = None,
) -> None:
    """CHECK through ``plugin_type``; raises the delegate's error."""
    _run("CHECK", plugin_type, netconf, timeout, env, executor)


def delegate_del(
    plugin_type: str,
    netconf: bytes,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    env: Mapping[str, str] | None = None,
    executor: PluginExecutor | None = None,
) -> None:
    """DEL through ``plugin_type``; raises the delegate's error."""
    _run("DEL", plugin_type, netconf, timeout, env, executor)
