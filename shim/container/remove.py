"""RemoveContainer: force-stops a running container, then removes it and everything the shim
holds for it (log follower, record). Idempotent: unknown or already removed is a success.
The CRI log file stays: it belongs to kubelet's log directory and kubelet removes it."""

from __future__ import annotations

import logging

from cri_api import api_pb2
from shim.context import ShimContext
from shim.events.report import container_changed
from shim.store.container_record import ContainerRecord

log = logging.getLogger(__name__)


def remove_container(ctx: ShimContext, container_id: str) -> None:
    with ctx.containers.locked_record(container_id) as record:
        if record is None:
            log.info(
                "container %s: RemoveContainer of an unknown container, nothing to do", container_id
            )
            return
        remove_locked(ctx, record)


def remove_locked(ctx: ShimContext, record: ContainerRecord) -> None:
    ctx.infra.remove(record.id)  # force: a running container is killed first
    ctx.logs.forget(record.id)
    ctx.containers.drop(record.id)
    container_changed(ctx, record.id, record.sandbox_id, api_pb2.CONTAINER_DELETED_EVENT)
    log.info("container %s: removed", record.id)
