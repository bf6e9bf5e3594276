"""Running one plugin binary (spec section "Execution protocol").

The runtime owns the process: it finds the binary, builds the environment, feeds the
config on stdin, enforces a deadline and turns a non-zero exit into a typed error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cnilib.errors import (
    CODE_INTERNAL,
    DecodeError,
    PluginError,
    PluginNotFoundError,
    PluginTimeoutError,
)
from cnilib.types import RuntimeConf

log = logging.getLogger(__name__)

CNI_ENV_KEYS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")

# How long to wait for pipes to drain after killing a timed-out plugin's group: a
# grandchild that left the group could hold them open forever.
_DRAIN_AFTER_KILL = 5.0
# A CNI result is a few KiB; 16 MiB is far beyond any real one. Diagnostics beyond 64 KiB
# would only be truncated in the error anyway.
MAX_STDOUT = 16 * 1024 * 1024
MAX_STDERR = 64 * 1024


class PluginExecutor(Protocol):
    """How a plugin process is run; tests substitute an in-memory fake."""

    def run(
        self, path: str, env: Mapping[str, str], stdin: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]: ...


class ExecExecutor:
    """Runs the plugin as a child process in its own process group, reading at most
    MAX_STDOUT of its result and keeping at most MAX_STDERR of its diagnostics: a plugin
    that floods its output is killed, not held in the runtime's memory."""

    def run(
        self, path: str, env: Mapping[str, str], stdin: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]:
        # A new session makes the plugin a group leader, so a timeout kills the plugin
        # and everything it spawned (IPAM delegates, helpers), not just the top process.
        proc = subprocess.Popen(
            [path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
        try:
            stdout, stderr = _bounded_communicate(proc, stdin, time.monotonic() + timeout)
        except subprocess.TimeoutExpired as err:
            _kill_group(proc)
            raise PluginTimeoutError(
                f"failed to run plugin {path}: timed out after {timeout:g}s",
                f"killed process group {proc.pid}",
            ) from err
        except _OutputTooLarge as err:
            _kill_group(proc)
            raise PluginError(
                f"failed to run plugin {path}: more than {err.limit} bytes on {err.stream}",
                f"killed process group {proc.pid}",
                code=CODE_INTERNAL,
            ) from err
        return proc.wait(), stdout, stderr


class _OutputTooLarge(Exception):
    def __init__(self, stream: str, limit: int) -> None:
        super().__init__(stream)
        self.stream = stream
        self.limit = limit


def _bounded_communicate(
    proc: subprocess.Popen[bytes], stdin: bytes, deadline: float
) -> tuple[bytes, bytes]:
    """communicate() with limits: stdout beyond MAX_STDOUT ends the plugin; stderr is kept up
    to MAX_STDERR and the rest drained (a chatty plugin still finishes)."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    pending = memoryview(stdin)
    with selectors.DefaultSelector() as sel:
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, 0)
            for key, _ in sel.select(left):
                if key.fileobj is proc.stdin:
                    try:
                        pending = pending[os.write(proc.stdin.fileno(), pending[:65536]) :]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    out += chunk
                    if len(out) > MAX_STDOUT:
                        raise _OutputTooLarge("stdout", MAX_STDOUT)
                elif len(err) < MAX_STDERR:
                    err += chunk[: MAX_STDERR - len(err)]
    # Both pipes closed; a plugin that lingers after that still has its deadline.
    proc.wait(timeout=max(deadline - time.monotonic(), 0.001))
    return bytes(out), bytes(err)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.stdin is not None and proc.stdin.closed:
        proc.stdin = None  # already fed and closed: communicate() would flush it
    try:
        proc.communicate(timeout=_DRAIN_AFTER_KILL)
    except subprocess.TimeoutExpired:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()


def find_plugin(plugin_type: str, paths: Sequence[str]) -> str:
    """First regular executable file named `plugin_type` in `paths` (CNI_PATH order)."""
    if not plugin_type or "/" in plugin_type:
        raise PluginNotFoundError(f"failed to find plugin {plugin_type!r}: not a plain name")
    for directory in paths:
        if not directory:
            continue
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise PluginNotFoundError(
        f"failed to find plugin {plugin_type!r} in path {list(paths)}",
        "no regular executable file of that name",
    )


def plugin_env(
    command: str, rt: RuntimeConf | None, paths: Sequence[str], netns: str | None = None
) -> dict[str, str]:
    """The runtime's environment plus the six CNI_* variables (spec "Parameters").

    All six are always set, empty when they do not apply: a stale CNI_* inherited
    from our own environment must never leak into a call. CNI_PATH is always set
    because Go plugins refuse to run without it (code 4).
    """
    env = {k: v for k, v in os.environ.items() if k not in CNI_ENV_KEYS}
    env["CNI_COMMAND"] = command
    env["CNI_CONTAINERID"] = rt.container_id if rt else ""
    env["CNI_NETNS"] = (rt.netns if netns is None else netns) if rt else ""
    env["CNI_IFNAME"] = rt.ifname if rt else ""
    env["CNI_ARGS"] = format_cni_args(rt.args) if rt else ""
    env["CNI_PATH"] = os.pathsep.join(paths)
    return env


def format_cni_args(args: Sequence[tuple[str, str]]) -> str:
    # Spec: "alphanumeric key-value pairs separated by semicolons", no escaping exists.
    return ";".join(f"{key}={value}" for key, value in args)


def exec_plugin(
    path: str,
    env: Mapping[str, str],
    stdin: bytes,
    timeout: float,
    executor: PluginExecutor | None = None,
) -> bytes:
    """Run a plugin; stdout on exit 0, else PluginError / DecodeError."""
    runner = executor if executor is not None else ExecExecutor()
    command = env.get("CNI_COMMAND", "?")
    container = env.get("CNI_CONTAINERID", "")
    what = f"{command} plugin {os.path.basename(path)}"
    if container:
        what += f" for container {container}"
    try:
        code, stdout, stderr = runner.run(path, env, stdin, timeout)
    except PluginTimeoutError as err:
        raise PluginTimeoutError(
            f"timed out after {timeout:g}s and was killed",
            err.details,
            context=f"failed to {what}",
        ) from err
    except OSError as err:
        raise PluginError(
            f"cannot execute {path}", str(err), code=CODE_INTERNAL, context=f"failed to {what}"
        ) from err
    if stderr:
        log.debug("%s stderr: %s", what, stderr.decode(errors="replace").rstrip())
    if code == 0:
        return stdout
    raise _decode_error(what, code, stdout, stderr)


def _decode_error(what: str, exit_code: int, stdout: bytes, stderr: bytes) -> Exception:
    text = stdout.strip()
    if not text:
        # No error object at all: the plugin crashed; stderr is the only clue.
        return PluginError(
            f"exited with status {exit_code} and no error object",
            stderr.decode(errors="replace").strip(),
            code=CODE_INTERNAL,
            context=f"failed to {what}",
        )
    try:
        obj: Any = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        return DecodeError(
            f"exited with status {exit_code}, error output is not JSON",
            f"{err}: {_quote(text)}",
            context=f"failed to {what}",
        )
    if not isinstance(obj, dict) or not isinstance(obj.get("code"), int):
        return DecodeError(
            f"exited with status {exit_code}, error output has no integer code",
            _quote(text),
            context=f"failed to {what}",
        )
    msg = obj.get("msg")
    details = obj.get("details")
    return PluginError(
        msg if isinstance(msg, str) else "",
        details if isinstance(details, str) else "",
        code=obj["code"],
        context=f"failed to {what}",
    )


def _quote(data: bytes, limit: int = 500) -> str:
    text = data.decode(errors="replace")
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def get_version_info(
    path: str,
    paths: Sequence[str],
    timeout: float,
    executor: PluginExecutor | None = None,
    cni_version: str = "1.1.0",
) -> list[str]:
    """Ask a plugin which spec versions it supports (CNI_COMMAND=VERSION)."""
    stdin = json.dumps({"cniVersion": cni_version}).encode()
    out = exec_plugin(path, plugin_env("VERSION", None, paths), stdin, timeout, executor)
    try:
        obj = json.loads(out)
    except (ValueError, UnicodeDecodeError) as err:
        raise DecodeError(f"failed to decode VERSION output of {path}", _quote(out)) from err
    if not isinstance(obj, dict):
        raise DecodeError(f"failed to decode VERSION output of {path}", _quote(out))
    supported = obj.get("supportedVersions")
    if supported is None:
        # Pre-0.3 plugins answer with just their own version.
        version = obj.get("cniVersion")
        return [version] if isinstance(version, str) else []
    if not isinstance(supported, list) or not all(isinstance(v, str) for v in supported):
        raise DecodeError(f"failed to decode VERSION output of {path}", _quote(out))
    return list(supported)
