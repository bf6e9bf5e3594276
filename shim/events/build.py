"""A Change becomes the ContainerEventResponse kubelet expects: the pod's sandbox status and
the statuses of all its containers, as PodSandboxStatus would answer now."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from cri_api import api_pb2
from shim.errors import NotFoundError
from shim.events.hub import Change
from shim.sandbox.status import pod_sandbox_status, sandbox_status_message

if TYPE_CHECKING:
    from shim.context import ShimContext

log = logging.getLogger(__name__)


def build_event(ctx: ShimContext, change: Change) -> api_pb2.ContainerEventResponse | None:
    # Taken before the statuses are read: kubelet keeps a cached pod status newer than an
    # event's created_at, so the statuses must be at least as new as the stamp.
    created_at = time.time_ns()
    event = api_pb2.ContainerEventResponse(
        container_id=change.container_id,
        container_event_type=change.event_type,
        created_at=created_at,
    )
    try:
        current = pod_sandbox_status(ctx, change.sandbox_id, verbose=False)
    except NotFoundError:
        if change.sandbox is None:
            # kubelet drops an event without a sandbox status; its relist covers the rest.
            log.debug(
                "container events: sandbox %s of %s is unknown",
                change.sandbox_id,
                change.container_id,
            )
            return None
        event.pod_sandbox_status.CopyFrom(sandbox_status_message(change.sandbox, running=False))
        return event
    event.pod_sandbox_status.CopyFrom(current.status)
    event.containers_statuses.extend(current.containers_statuses)
    return event
