"""RemovePodSandbox: stop if needed, remove its containers, then the infra container and every
record of it. Idempotent: removing an unknown or already removed sandbox succeeds."""

from __future__ import annotations

import logging

from cri_api import api_pb2
from shim.container.remove import remove_locked as remove_container_locked
from shim.context import ShimContext
from shim.events.hub import Change
from shim.sandbox.stop import stop_locked

log = logging.getLogger(__name__)


def remove_pod_sandbox(ctx: ShimContext, sandbox_id: str) -> None:
    with ctx.store.locked_record(sandbox_id) as record:
        if record is None:
            log.info(
                "sandbox %s: RemovePodSandbox for an unknown sandbox, nothing to do", sandbox_id
            )
            return
        stop_locked(ctx, record)
        for container in ctx.containers.of_sandbox(record.id):
            with ctx.containers.locked_record(container.id) as locked:
                if locked is not None:
                    remove_container_locked(ctx, locked)
        ctx.infra.remove(record.id)
        # Last: while the checkpoint exists, a failed removal can be retried after a restart.
        ctx.store.delete(record.id)
    # Carries the record's last state: kubelet forgets the pod on it.
    ctx.events.report(Change(record.id, record.id, api_pb2.CONTAINER_DELETED_EVENT, sandbox=record))
    log.info("sandbox %s: removed", record.id)
