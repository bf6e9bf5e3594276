"""ExecSync: run a command in a running container and return its output and exit code.

kubelet's exec probes call this every few seconds on every pod that has one, so a call costs
the store look-up and the three Docker requests of `docker_exec.run_exec`, no container inspect:
the store, kept current by Docker's events, says whether the container runs, and should it be
stale, Docker refuses the exec with 409, which becomes the same FAILED_PRECONDITION.

Contract (CRI-CONTAINERS.md §3): a non-zero exit is a response, not an error; `timeout` 0
means none, yet the caller's gRPC deadline still holds (kubelet sets it to timeout + 2 min);
on timeout the command's processes are killed before DEADLINE_EXCEEDED is returned.
"""

from __future__ import annotations

from typing import Protocol

from cri_api import api_pb2
from shim.engine.docker_exec import DockerClientOwner, run_exec
from shim.errors import DeadlineError, FailedPreconditionError, InvalidArgumentError
from shim.store.container_record import ContainerState
from shim.store.container_store import ContainerStore


class ExecSyncContext(Protocol):
    """The part of `ShimContext` ExecSync reads (tests pass a small fake)."""

    @property
    def containers(self) -> ContainerStore: ...

    @property
    def infra(self) -> DockerClientOwner: ...


def exec_sync(
    ctx: ExecSyncContext,
    request: api_pb2.ExecSyncRequest,
    deadline: float | None = None,
) -> api_pb2.ExecSyncResponse:
    """`deadline` is the caller's gRPC deadline as an absolute `time.monotonic()` value
    (`time.monotonic() + context.time_remaining()`), None when it has none."""
    if not request.container_id:
        raise InvalidArgumentError("container_id is empty")
    if not request.cmd:
        raise InvalidArgumentError("cmd is empty")
    if request.timeout < 0:
        raise InvalidArgumentError(f"timeout is negative: {request.timeout}")
    record = ctx.containers.require(request.container_id)  # NOT_FOUND, unique prefixes
    if record.state is not ContainerState.RUNNING:
        raise FailedPreconditionError(
            f"container {record.id} is not running (state {record.state.value})"
        )
    cmd = list(request.cmd)
    outcome = run_exec(ctx.infra.client, record.id, cmd, request.timeout or None, deadline)
    if outcome.timed_out:
        # The request's timeout, or the gRPC deadline if that came first.
        waited = min(request.timeout, outcome.elapsed) if request.timeout else outcome.elapsed
        raise DeadlineError(
            f"command {cmd} in container {record.id} timed out after {round(waited, 2):g} s"
        )
    return api_pb2.ExecSyncResponse(
        stdout=outcome.stdout, stderr=outcome.stderr, exit_code=outcome.exit_code
    )
