"""Starting a cri-shim process from a ShimConfig and waiting until it serves, and stopping a
child process for good: what the test harness and the benchmark do to run private shims (and
crictl, kubelet, etcd...) beside each other."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

import grpc

from cri_api import api_pb2, api_pb2_grpc
from shim.config import ShimConfig


def start_shim(
    config: ShimConfig, log_path: str, extra_args: list[str] | None = None, timeout: float = 60
) -> subprocess.Popen[bytes]:
    """Start `python -m shim.main` with `config`, its output appended to `log_path`; return once
    Version answers. Raises RuntimeError (with the log's tail) if it exits or stays silent."""
    cmd = [sys.executable, "-m", "shim.main", *config.to_args(), *(extra_args or [])]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_serving(proc, config, log_path, timeout)
    return proc


def wait_serving(
    proc: subprocess.Popen[bytes], config: ShimConfig, log_path: str, timeout: float = 60
) -> None:
    """Return once the shim `proc` (started with `config`, however it was launched) answers
    Version. Raises RuntimeError (with the log's tail) if it exits, or kills it and raises if it
    stays silent."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(config.endpoint) as channel:
        runtime = api_pb2_grpc.RuntimeServiceStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"cri-shim exited with {proc.returncode}:\n{_tail(log_path)}")
            if os.path.exists(config.socket_path):
                try:
                    runtime.Version(api_pb2.VersionRequest(), timeout=2)
                    return
                except grpc.RpcError:
                    pass
            time.sleep(0.05)
    stop_process(proc, sig=signal.SIGKILL)
    raise RuntimeError(f"cri-shim did not answer within {timeout:.0f} s:\n{_tail(log_path)}")


def stop_process(
    proc: subprocess.Popen[Any], timeout: float = 10.0, sig: int = signal.SIGTERM
) -> int:
    """Stop `proc` and reap it; its exit status (negative: the signal that ended it).

    Sends `sig` (SIGTERM unless told), waits up to `timeout` seconds, then SIGKILLs and waits
    without bound (SIGKILL cannot be caught; only a process stuck in the kernel delays it). A
    process that has already exited is only reaped, and one that is gone by the time the signal
    goes out is no error, so this belongs in every `finally` and fixture finalizer: whatever the
    test's outcome, a child must be waited for, or it lingers as a zombie, or one that ignores
    SIGTERM outlives us as an orphan holding its ports, sockets and files. The caller closes the
    child's pipes."""
    if proc.poll() is None:
        # Popen already skips a child it has reaped and swallows ProcessLookupError; the guard
        # keeps that promise for a Popen subclass that signals another way.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    return proc.wait()


def _tail(path: str, chars: int = 4000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except FileNotFoundError:
        return ""
