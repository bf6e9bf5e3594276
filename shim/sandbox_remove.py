"""RemovePodSandbox: stop if needed, then remove the infra container and every record of it.
Idempotent: removing an unknown or already removed sandbox succeeds."""

from __future__ import annotations

import logging

from shim.context import ShimContext
from shim.errors import NotFoundError
from shim.sandbox_stop import stop_locked

log = logging.getLogger(__name__)


def remove_pod_sandbox(ctx: ShimContext, sandbox_id: str) -> None:
    try:
        full_id = ctx.store.resolve(sandbox_id)
    except NotFoundError:
        log.info("sandbox %s: RemovePodSandbox for an unknown sandbox, nothing to do", sandbox_id)
        return
    with ctx.store.locked(full_id):
        record = ctx.store.get(full_id)
        if record is None:
            return
        stop_locked(ctx, record)
        ctx.infra.remove(full_id)
        # Last: while the checkpoint exists, a failed removal can be retried after a restart.
        ctx.store.delete(full_id)
    log.info("sandbox %s: removed", full_id)
