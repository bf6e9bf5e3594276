"""StopPodSandbox: CNI DEL of the same chain in reverse, then stop the infra container.

Idempotent and called several times by kubelet; an unknown id is a success (the sandbox may
already be removed). Works when the infra container is already dead and after a restart,
because DEL needs only the checkpoint and the pinned namespace, never the container's pid."""

from __future__ import annotations

import logging

from cri_api import api_pb2
from shim.container.stop import stop_locked as stop_container_locked
from shim.context import ShimContext
from shim.events.report import sandbox_changed
from shim.logformat import log_fields
from shim.sandbox.netns_pin import unpin
from shim.store.sandbox_record import NetworkPhase, SandboxRecord, SandboxState

log = logging.getLogger(__name__)

# The pause program exits on SIGTERM at once; the grace period only matters for a foreign image.
INFRA_STOP_TIMEOUT_S = 10


def stop_pod_sandbox(ctx: ShimContext, sandbox_id: str) -> None:
    with ctx.store.locked_record(sandbox_id) as record:
        if record is None:
            log.info("sandbox %s: StopPodSandbox of an unknown sandbox, nothing to do", sandbox_id)
            return
        stop_locked(ctx, record)


def stop_locked(ctx: ShimContext, record: SandboxRecord) -> None:
    """Stop a sandbox whose lock the caller holds. Each step is recorded as it completes, so a
    call that fails half way resumes where it stopped."""
    # 0. its containers: the CRI says StopPodSandbox force-terminates them (kubelet has
    # already given them their grace period).
    for container in ctx.containers.of_sandbox(record.id):
        with ctx.containers.locked_record(container.id) as locked:
            if locked is not None:
                stop_container_locked(ctx, locked, 0)
    # 1. network: DEL while the namespace is still pinned.
    if record.network_phase in (NetworkPhase.PENDING, NetworkPhase.ATTACHED):
        assert record.network is not None
        ctx.network.teardown(record.id, record.netns_path, record.network)
        record.network_phase = NetworkPhase.DETACHED
        ctx.store.save(record)
    # 2. the namespace pin: nothing in it is ours any more. The pin's path is derived from the
    # id, so a pin made just before a crash (not yet in the checkpoint) goes too.
    for path in {record.netns_path, ctx.netns_path(record.id)} - {""}:
        unpin(path)
    # 3. the infra container
    ctx.infra.stop(record.id, INFRA_STOP_TIMEOUT_S)
    ctx.liveness.mark(record.id, False)
    if record.state is not SandboxState.NOTREADY:
        record.state = SandboxState.NOTREADY
        ctx.store.save(record)
    sandbox_changed(ctx, record.id, api_pb2.CONTAINER_STOPPED_EVENT)  # once, however often
    log.info("sandbox %s: stopped", record.id, extra=log_fields(sandbox_id=record.id))
