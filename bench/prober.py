"""Status and ListPodSandbox probed back to back from a process of its own, at normal or at
real-time CPU priority (`python -m bench.prober`, driven by :class:`ProberProcess`).

Why a process, and why a real-time one: on a saturated 2-core machine the tail of a probe is
mostly the probing process's own wake-up delay, not the server's answer time. Measured under a
burst of 30 containers created through Docker, on an idle cri-shim at normal priority: with the
prober at normal priority, Status p99 16-21 ms; the same with only the prober at SCHED_FIFO
priority 1, 5-8 ms (and a bare Python gRPC server that answers nothing else measured 12-26 ms
from a normal prober). The benchmark runs both probers side by side and reports both, so that
the shim's own share can be read apart from the prober's.

Protocol on stdio: the prober prints one line ``ready <priority>`` once its channel is up,
probes until its stdin reaches EOF, then prints one JSON document with the samples
(``[start, seconds]`` pairs, start on CLOCK_MONOTONIC, the clock :func:`now` reads).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from cri_api import api_pb2, api_pb2_grpc

RPC_TIMEOUT_S = 30.0
REALTIME = "realtime"
NORMAL = "normal"


def now() -> float:
    """The clock both the prober and the benchmark stamp with (shared by every process)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass
class Probes:
    """(start time, duration s) per RPC probed."""

    status: list[tuple[float, float]] = field(default_factory=list)
    list_pods: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    priority: str = NORMAL


def take_priority(wanted: str) -> str:
    """Switch this process to `wanted` before any thread exists (threads inherit it); returns
    what it runs at, saying why when real-time was refused."""
    if wanted != REALTIME:
        return NORMAL
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError as err:
        return f"{NORMAL} (SCHED_FIFO refused: {err.strerror})"
    return "SCHED_FIFO 1"


def probe_until_eof(endpoint: str, gap_s: float, priority: str) -> Probes:
    probes = Probes(priority=priority)
    done = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        done.set()

    with grpc.insecure_channel(endpoint) as channel:
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT_S)
        stub = api_pb2_grpc.RuntimeServiceStub(channel)
        calls: list[tuple[list[tuple[float, float]], Callable[[], object]]] = [
            (probes.status, lambda: stub.Status(api_pb2.StatusRequest(), timeout=RPC_TIMEOUT_S)),
            (
                probes.list_pods,
                lambda: stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=RPC_TIMEOUT_S),
            ),
        ]
        threading.Thread(target=watch_stdin, daemon=True).start()
        sys.stdout.write(f"ready {priority}\n")
        sys.stdout.flush()
        while not done.is_set():
            for samples, call in calls:
                start = now()
                try:
                    call()
                except grpc.RpcError as err:  # recorded, never fatal to the load
                    probes.errors.append(f"{err.code()}: {err.details()}")
                    continue
                samples.append((start, now() - start))
            done.wait(gap_s)
    return probes


class ProberProcess:
    """``with ProberProcess(endpoint, gap, REALTIME) as p: ...``; then ``p.probes``."""

    def __init__(self, endpoint: str, gap_s: float, priority: str = NORMAL) -> None:
        self._cmd = [
            sys.executable,
            "-m",
            "bench.prober",
            "--endpoint",
            endpoint,
            "--gap-s",
            str(gap_s),
            "--priority",
            priority,
        ]
        self._proc: subprocess.Popen[str] | None = None
        self.probes = Probes()

    def __enter__(self) -> ProberProcess:
        self._proc = subprocess.Popen(
            self._cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("ready "):
            self._finish()
            raise RuntimeError(f"the prober did not start: {line!r}")
        self.probes.priority = line[len("ready ") :].strip()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()

    def _finish(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        try:
            out, _ = proc.communicate(timeout=RPC_TIMEOUT_S + 10)  # closes stdin: stop
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode == 0 and out.strip():
            data: dict[str, Any] = json.loads(out.splitlines()[-1])
            self.probes = Probes(
                status=[(s, d) for s, d in data["status"]],
                list_pods=[(s, d) for s, d in data["list_pods"]],
                errors=list(data["errors"]),
                priority=str(data["priority"]),
            )
        elif proc.returncode != 0:
            raise RuntimeError(f"the prober exited with {proc.returncode}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.prober", description=__doc__)
    p.add_argument("--endpoint", required=True, help="e.g. unix:///run/cri-shim.sock")
    p.add_argument("--gap-s", type=float, default=0.01, help="pause after each pair of probes")
    p.add_argument("--priority", choices=[NORMAL, REALTIME], default=NORMAL)
    args = p.parse_args(argv)
    priority = take_priority(args.priority)
    probes = probe_until_eof(args.endpoint, args.gap_s, priority)
    sys.stdout.write(
        json.dumps(
            {
                "status": probes.status,
                "list_pods": probes.list_pods,
                "errors": probes.errors,
                "priority": probes.priority,
            }
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
