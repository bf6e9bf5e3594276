"""ReopenContainerLog: kubelet renamed the log file (rotation) and wants a new one at the same
path, existing when this returns. Only a running container has a log being written."""

from __future__ import annotations

from shim.context import ShimContext
from shim.errors import FailedPreconditionError
from shim.store.container_record import ContainerState


def reopen_container_log(ctx: ShimContext, container_id: str) -> None:
    record = ctx.containers.require(container_id)
    if record.state is not ContainerState.RUNNING:
        raise FailedPreconditionError(
            f"container {record.id} is {record.state.value}: only a running container's log"
            " can be reopened"
        )
    if not record.spec.log_path:
        raise FailedPreconditionError(f"container {record.id} was created without a log path")
    ctx.logs.reopen(record.id)
