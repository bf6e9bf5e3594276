"""WarmExecutor: the shim's plugin executor that sends our own plugins to the warm worker.

Implements ``cnilib.invoke.PluginExecutor``. A path that is an installed netplugins executable
(recognised by its marker line, :func:`netplugins.registry.identify`) runs in a child forked
from the warm worker (:mod:`netplugins.worker`); any other path, or any failure to reach the
worker, goes to ``cnilib.invoke.ExecExecutor``, so behaviour never depends on the worker being
up. This module does not import pyroute2 (the shim imports it).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from netplugins import registry, wire

if TYPE_CHECKING:
    from cnilib.invoke import PluginExecutor

log = logging.getLogger(__name__)


RESTART_BACKOFF = 30.0
# How long a request waits for a pool child to accept it and say hello. Short and separate from
# the plugin timeout: without a hello the request never reached a child, so exec'ing it
# instead is safe, and a worker that accepts nothing must not cost a whole plugin timeout.
HELLO_TIMEOUT = 2.0


class WorkerUnavailable(Exception):
    """The request never reached a worker child, so running it elsewhere is safe."""


class WarmExecutor:
    """Run our plugins through the warm worker, everything else by exec.

    ``start()`` spawns the worker (``python -m netplugins worker``) and waits until it
    listens; ``stop()`` terminates it. ``run()`` starts it lazily if needed and restarts it once
    if it died. A request no child says hello to within ``hello_timeout`` is exec'd instead
    (with the full plugin timeout), so a call costs at most two hello waits (one per worker
    start) plus a worker start plus the plugin timeout. Thread-safe: each call uses its own
    connection and forked child.
    """

    def __init__(
        self,
        socket_path: str | None = None,
        fallback: PluginExecutor | None = None,
        python: str | None = None,
        start_timeout: float = 15.0,
        hello_timeout: float = HELLO_TIMEOUT,
    ) -> None:
        self._own_dir = "" if socket_path else tempfile.mkdtemp(prefix="netplugins-worker-")
        self.socket_path = socket_path or os.path.join(self._own_dir, "worker.sock")
        if fallback is None:
            from cnilib.invoke import ExecExecutor

            fallback = ExecExecutor()
        self.fallback: PluginExecutor = fallback
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        self.hello_timeout = hello_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        # After a failed start, exec for a while instead of paying a failed spawn per call.
        self._retry_after = 0.0
        # What happened to each call: answered warm, one of ours exec'd because the worker
        # was unusable (a fallback), or a foreign binary exec'd. Tests assert on these.
        self.counts = {"warm": 0, "fallback": 0, "foreign": 0}
        # Calls holding a worker child right now (the shim's metrics: busy children).
        self.busy = 0
        self._busy_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        try:
            proc = subprocess.Popen(
                [self.python, "-m", "netplugins", "worker", "--socket", self.socket_path],
                stdin=subprocess.PIPE,  # closed by our death: the worker exits on EOF
                stdout=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as exc:
            raise RuntimeError(f"failed to start netplugins worker {self.python}: {exc}") from exc
        assert proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                line = proc.stdout.readline()
                break
            if proc.poll() is not None:
                break
        if line.strip() != b"ready":
            proc.kill()
            proc.wait()
            raise RuntimeError(f"failed to start netplugins worker: answered {line!r}")
        self._proc = proc
        log.info("netplugins warm worker %d listening on %s", proc.pid, self.socket_path)

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        if self._own_dir:
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
            with contextlib.suppress(OSError):
                os.rmdir(self._own_dir)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def worker_pid(self) -> int | None:
        """The zygote's pid while it runs (its children are the pool)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def __enter__(self) -> WarmExecutor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- PluginExecutor ------------------------------------------------------------------
    def run(
        self, path: str, env: Mapping[str, str], stdin: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]:
        plugin_type = registry.identify(path)
        if plugin_type is None:
            self.counts["foreign"] += 1
            return self.fallback.run(path, env, stdin, timeout)
        for attempt in (1, 2):
            try:
                if not self.running:
                    if time.monotonic() < self._retry_after:
                        break
                    with self._lock:
                        try:
                            self._start_locked()
                        except RuntimeError:
                            self._retry_after = time.monotonic() + RESTART_BACKOFF
                            raise
                with self._busy_lock:
                    self.busy += 1
                try:
                    answer = self._call(plugin_type, env, stdin, timeout)
                finally:
                    with self._busy_lock:
                        self.busy -= 1
                self.counts["warm"] += 1
                return answer
            except (WorkerUnavailable, RuntimeError) as exc:
                log.warning("warm worker unusable for %s (attempt %d): %s", path, attempt, exc)
                if attempt == 1 and self._proc is not None and self._proc.poll() is not None:
                    continue  # it died: restart once
                break
        self.counts["fallback"] += 1
        return self.fallback.run(path, env, stdin, timeout)

    def _call(
        self, plugin_type: str, env: Mapping[str, str], stdin: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]:
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(min(self.hello_timeout, timeout))
            try:
                sock.connect(self.socket_path)
                hello = wire.recv_message(sock)
                child = int(hello["pid"])
                wire.send_message(
                    sock,
                    {
                        "type": plugin_type,
                        "env": dict(env),
                        "stdin": base64.b64encode(stdin).decode(),
                    },
                )
            except (OSError, wire.WireError, KeyError, ValueError) as exc:
                raise WorkerUnavailable(f"no worker child took the request: {exc}") from exc
            try:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                answer = wire.recv_message(sock)
            except wire.WireError as exc:
                # The child died after taking the request: report a crash, never re-run it
                # (a second ADD could double-book resources).
                return 1, b"", f"warm worker child {child} died: {exc}\n".encode()
            except TimeoutError as exc:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child, signal.SIGKILL)
                from cnilib.errors import PluginTimeoutError

                raise PluginTimeoutError(
                    f"failed to run plugin {plugin_type}: timed out after {timeout:g}s",
                    f"killed warm worker child {child}",
                ) from exc
        return (
            int(answer["code"]),
            base64.b64decode(str(answer["stdout"])),
            base64.b64decode(str(answer["stderr"])),
        )
