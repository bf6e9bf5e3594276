"""Docker's `inspect` of a container → the CRI's view of its state, as a pure function.

The rules are cri-dockerd's (container_status.go), which kubelet's users know: running (or
paused, restarting) is RUNNING; a container that ran and finished is EXITED with reason
`OOMKilled`, `Completed` (exit 0) or `Error`; one that never ran but carries an exit code
failed to start: EXITED, `ContainerCannotRun`, its times set to its creation; else CREATED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shim.store.container_record import ContainerState
from shim.timestamps import rfc3339_ns


@dataclass(frozen=True)
class RunState:
    state: ContainerState
    pid: int
    started_at: int
    finished_at: int
    exit_code: int
    reason: str
    message: str


def run_state(inspect: dict[str, Any], created_at: int) -> RunState:
    state = inspect.get("State") or {}
    started = rfc3339_ns(state.get("StartedAt", ""))
    finished = rfc3339_ns(state.get("FinishedAt", ""))
    exit_code = int(state.get("ExitCode") or 0)
    message = str(state.get("Error") or "")
    if state.get("Running") or state.get("Paused") or state.get("Restarting"):
        return RunState(ContainerState.RUNNING, int(state.get("Pid") or 0), started, 0, 0, "", "")
    if finished:
        if state.get("OOMKilled"):
            reason = "OOMKilled"
        elif exit_code == 0:
            reason = "Completed"
        else:
            reason = "Error"
        return RunState(ContainerState.EXITED, 0, started, finished, exit_code, reason, message)
    if exit_code:
        return RunState(
            ContainerState.EXITED, 0, created_at, created_at, exit_code, "ContainerCannotRun",
            message,
        )  # fmt: skip
    return RunState(ContainerState.CREATED, 0, 0, 0, 0, "", message)
