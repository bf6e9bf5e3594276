"""Status and ListPodSandbox probed back to back from a process of its own
(`python -m bench.prober`, driven by :class:`ProberProcess`).

A process of its own, not a thread of the benchmark: the benchmark's own threads (the calls
that make the load) would share the prober's interpreter lock, and their scheduling would
show in the probes as if it were the shim's.

Protocol on stdio: the prober prints one line ``ready`` once its channel is up, probes until
its stdin reaches EOF, then prints one JSON document with the samples (``[start, seconds]``
pairs, start on CLOCK_MONOTONIC, the clock :func:`now` reads).
"""

from __future__ import annotations

import argparse
import json
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


def now() -> float:
    """The clock both the prober and the benchmark stamp with (shared by every process)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass
class Probes:
    """(start time, duration s) per RPC probed."""

    status: list[tuple[float, float]] = field(default_factory=list)
    list_pods: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def probe_until_eof(endpoint: str, gap_s: float) -> Probes:
    probes = Probes()
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
        sys.stdout.write("ready\n")
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
    """``with ProberProcess(endpoint, gap) as p: ...``; then ``p.probes``."""

    def __init__(self, endpoint: str, gap_s: float) -> None:
        self._cmd = [
            sys.executable,
            "-m",
            "bench.prober",
            "--endpoint",
            endpoint,
            "--gap-s",
            str(gap_s),
        ]
        self._proc: subprocess.Popen[str] | None = None
        self.probes = Probes()

    def __enter__(self) -> ProberProcess:
        self._proc = subprocess.Popen(
            self._cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line != "ready\n":
            self._finish()
            raise RuntimeError(f"the prober did not start: {line!r}")
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
            )
        elif proc.returncode != 0:
            raise RuntimeError(f"the prober exited with {proc.returncode}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.prober", description=__doc__)
    p.add_argument("--endpoint", required=True, help="e.g. unix:///run/cri-shim.sock")
    p.add_argument("--gap-s", type=float, default=0.01, help="pause after each pair of probes")
    args = p.parse_args(argv)
    probes = probe_until_eof(args.endpoint, args.gap_s)
    sys.stdout.write(
        json.dumps(
            {
                "status": probes.status,
                "list_pods": probes.list_pods,
                "errors": probes.errors,
            }
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
