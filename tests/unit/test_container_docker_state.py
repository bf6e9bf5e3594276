"""Docker's container state → the CRI's state, reason and times."""

from __future__ import annotations

from typing import Any

import pytest

from shim.container.docker_state import run_state
from shim.store.container_record import ContainerState
from shim.timestamps import rfc3339_ns

STARTED = "2026-12-01T10:00:00.123456789Z"
FINISHED = "2026-12-01T10:00:05.5Z"
ZERO = "0001-01-01T00:00:00Z"


def _inspect(**state: Any) -> dict[str, Any]:
    base = {"Running": False, "Pid": 0, "ExitCode": 0, "StartedAt": ZERO, "FinishedAt": ZERO}
    base.update(state)
    return {"State": base}


@pytest.mark.parametrize(
    ("state", "expected", "reason", "code"),
    [
        ({}, ContainerState.CREATED, "", 0),
        ({"Running": True, "Pid": 42, "StartedAt": STARTED}, ContainerState.RUNNING, "", 0),
        ({"StartedAt": STARTED, "FinishedAt": FINISHED}, ContainerState.EXITED, "Completed", 0),
        (
            {"StartedAt": STARTED, "FinishedAt": FINISHED, "ExitCode": 2},
            ContainerState.EXITED,
            "Error",
            2,
        ),
        (
            {"StartedAt": STARTED, "FinishedAt": FINISHED, "ExitCode": 137, "OOMKilled": True},
            ContainerState.EXITED,
            "OOMKilled",
            137,
        ),
        (
            {"ExitCode": 127, "Error": "exec: no such file"},
            ContainerState.EXITED,
            "ContainerCannotRun",
            127,
        ),
    ],
)
def test_states(state: dict[str, Any], expected: ContainerState, reason: str, code: int) -> None:
    got = run_state(_inspect(**state), created_at=7)
    assert (got.state, got.reason, got.exit_code) == (expected, reason, code)


def test_cannot_run_takes_creation_times_and_message() -> None:
    got = run_state(_inspect(ExitCode=127, Error="exec: no such file"), created_at=7)
    assert (got.started_at, got.finished_at, got.message) == (7, 7, "exec: no such file")


def test_running_pid_and_times() -> None:
    got = run_state(_inspect(Running=True, Pid=42, StartedAt=STARTED), created_at=0)
    assert got.pid == 42
    assert got.started_at == 1796119200_123456789


@pytest.mark.parametrize(
    ("stamp", "ns"),
    [
        ("", 0),
        (ZERO, 0),
        ("1970-01-01T00:00:01Z", 1_000_000_000),
        ("1970-01-01T00:00:01.5Z", 1_500_000_000),
        ("1970-01-01T01:00:01.000000001+01:00", 1_000_000_001),
    ],
)
def test_rfc3339(stamp: str, ns: int) -> None:
    assert rfc3339_ns(stamp) == ns
