"""StopContainer: the stop signal, then SIGKILL once the timeout has passed (Docker's stop).
Idempotent: an unknown, already stopped or never started container is a success, as the CRI
says (containerd does the same; kubelet retries stops)."""

from __future__ import annotations

import logging

from cri_api import api_pb2
from shim.container.refresh import refresh
from shim.context import ShimContext
from shim.events.report import container_changed
from shim.logformat import log_fields
from shim.store.container_record import ContainerRecord, ContainerState

log = logging.getLogger(__name__)

# How long a stop waits for the container's last output to reach its CRI log.
LOG_DRAIN_TIMEOUT_S = 5.0


def stop_container(ctx: ShimContext, container_id: str, timeout: int) -> None:
    with ctx.containers.locked_record(container_id) as record:
        if record is None:
            log.info(
                "container %s: StopContainer of an unknown container, nothing to do", container_id
            )
            return
        stop_locked(ctx, record, timeout)


def stop_locked(ctx: ShimContext, record: ContainerRecord, timeout: int) -> None:
    """Stop a container whose lock the caller holds (also used by StopPodSandbox)."""
    if record.state is ContainerState.RUNNING:
        ctx.infra.stop(record.id, max(0, timeout))
        if refresh(ctx, record) is None:
            return
    if record.state is ContainerState.EXITED:  # reported once, with Docker's die event
        container_changed(ctx, record.id, record.sandbox_id, api_pb2.CONTAINER_STOPPED_EVENT)
    if record.spec.log_path and not ctx.logs.wait_complete(record.id, LOG_DRAIN_TIMEOUT_S):
        log.warning(
            "container %s: its log was not complete %.0f s after it stopped",
            record.id,
            LOG_DRAIN_TIMEOUT_S,
        )
    log.info(
        "container %s: stopped (%s, exit code %d)",
        record.id,
        record.state.value,
        record.exit_code,
        extra=log_fields(sandbox_id=record.sandbox_id, container_id=record.id),
    )
