"""StartContainer: the CRI log file first (kubelet links /var/log/containers/… only to a log
that exists when StartContainer returns), then `docker start`, then the log follower."""

from __future__ import annotations

import logging

from cri_api import api_pb2
from shim.container.refresh import refresh
from shim.context import ShimContext
from shim.errors import FailedPreconditionError, InfraRuntimeError, NotFoundError
from shim.events.report import container_changed
from shim.logformat import log_fields
from shim.store.container_record import ContainerState

log = logging.getLogger(__name__)


def start_container(ctx: ShimContext, container_id: str) -> None:
    with ctx.containers.locked_record(container_id) as record:
        if record is None:
            raise NotFoundError(f"container {container_id!r} not found")
        if record.state is not ContainerState.CREATED:
            raise FailedPreconditionError(
                f"container {record.id} is {record.state.value}: only a created container can"
                " be started"
            )
        spec = record.spec
        if spec.log_path:
            ctx.logs.prepare(record.id, spec.log_path)
        try:
            ctx.infra.start(record.id)
        except InfraRuntimeError as err:
            refresh(ctx, record)  # Docker records why it could not run (ContainerCannotRun)
            raise InfraRuntimeError(f"failed to start container {record.id}: {err}") from err
        finally:
            # Even a failed start may have produced output worth keeping (a wrong command
            # says so on stderr); the follower ends by itself once the container is down.
            if spec.log_path:
                ctx.logs.follow(record.id, spec.log_path, spec.tty)
        refresh(ctx, record)
    container_changed(ctx, record.id, record.sandbox_id, api_pb2.CONTAINER_STARTED_EVENT)
    log.info(
        "container %s: started (pid %d)",
        record.id,
        record.pid,
        extra=log_fields(sandbox_id=record.sandbox_id, container_id=record.id),
    )
