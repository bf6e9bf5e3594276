"""stop_process() on real child processes: SIGTERM first, SIGKILL after the grace period, an
already-exited child only reaped, and in every case nothing left behind (no zombie, no orphan)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shim.process import stop_process


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Children a test starts; SIGKILLed and reaped at the end whatever stop_process did."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def spawn(
    children: list[subprocess.Popen[bytes]], *args: str, **kw: Any
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(list(args), **kw)
    children.append(proc)
    return proc


def assert_gone(pid: int) -> None:
    """Neither running nor a zombie: no child of ours has this pid any more."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_zombie(pid: int) -> None:
    """Until `pid` has exited but is not yet reaped."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not exit within 10 s")


def test_a_running_process_ends_on_sigterm(children: list[subprocess.Popen[bytes]]) -> None:
    proc = spawn(children, "sleep", "60")
    started = time.monotonic()
    assert stop_process(proc, timeout=10) == -signal.SIGTERM
    assert time.monotonic() - started < 5
    assert_gone(proc.pid)


def test_a_process_ignoring_sigterm_is_killed_after_the_timeout(
    children: list[subprocess.Popen[bytes]],
) -> None:
    # `exec` keeps one process (the ignored disposition survives exec), so the SIGKILL reaches
    # the sleep itself and no grandchild is orphaned; "ready" says the trap is in place.
    script = 'trap "" TERM; echo ready; exec sleep 60'
    proc = spawn(children, "sh", "-c", script, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    started = time.monotonic()
    assert stop_process(proc, timeout=0.5) == -signal.SIGKILL
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 5, elapsed
    assert_gone(proc.pid)


def test_an_exited_process_is_only_reaped(children: list[subprocess.Popen[bytes]]) -> None:
    proc = spawn(children, "sh", "-c", "exit 3")
    wait_zombie(proc.pid)
    assert stop_process(proc) == 3
    assert_gone(proc.pid)
    assert stop_process(proc) == 3  # again: already reaped, same status, no error


def test_the_signal_and_timeout_are_the_callers(children: list[subprocess.Popen[bytes]]) -> None:
    proc = spawn(children, "sleep", "60")
    assert stop_process(proc, timeout=5, sig=signal.SIGINT) == -signal.SIGINT
    assert_gone(proc.pid)


class _GoneBeforeTheSignal(subprocess.Popen[bytes]):
    """A child that dies (and is reaped) between the liveness check and the signal, as a
    subclass that signals through os.kill without Popen's guard would then see it."""

    def send_signal(self, sig: int) -> None:
        super().send_signal(signal.SIGKILL)
        super().wait()
        raise ProcessLookupError(f"no process {self.pid}")


def test_a_process_gone_before_the_signal_is_no_error(
    children: list[subprocess.Popen[bytes]],
) -> None:
    proc = _GoneBeforeTheSignal(["sleep", "60"])
    children.append(proc)
    assert stop_process(proc) == -signal.SIGKILL
    assert_gone(proc.pid)
