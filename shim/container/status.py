"""ContainerStatus: the record, refreshed from Docker, in the CRI's words."""

from __future__ import annotations

import json
import logging
from typing import Any

from cri_api import api_pb2
from shim.container.convert import image_spec, metadata, reported_state
from shim.container.refresh import apply_inspect
from shim.context import ShimContext
from shim.errors import NotFoundError
from shim.store.container_record import ContainerRecord, ContainerState

log = logging.getLogger(__name__)

# A container just seen to exit may still have output on its way to the CRI log: wait this
# long for it before answering, so that EXITED means "the log is complete".
LOG_DRAIN_WAIT_S = 2.0


def container_status(
    ctx: ShimContext, request: api_pb2.ContainerStatusRequest
) -> api_pb2.ContainerStatusResponse:
    record = ctx.containers.require(request.container_id)
    data = _current_inspect(ctx, record, request.verbose)
    if record.state is ContainerState.EXITED and record.spec.log_path:
        ctx.logs.wait_complete(record.id, LOG_DRAIN_WAIT_S)
    spec = record.spec
    status = api_pb2.ContainerStatus(
        id=record.id,
        metadata=metadata(record),
        state=reported_state(ctx, record),
        created_at=spec.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        exit_code=record.exit_code,
        image=image_spec(record),
        image_ref=spec.image_id,
        image_id=spec.image_id,
        reason=record.reason,
        message=record.message,
        labels=spec.labels,
        annotations=spec.annotations,
        mounts=[_mount(m) for m in spec.mounts],
        log_path=spec.log_path,
        resources=api_pb2.ContainerResources(linux=linux_resources(data.get("HostConfig") or {})),
    )
    signal = (data.get("Config") or {}).get("StopSignal") or ""
    if signal in api_pb2.Signal.DESCRIPTOR.values_by_name:
        status.stop_signal = api_pb2.Signal.Value(signal)
    response = api_pb2.ContainerStatusResponse(status=status)
    if request.verbose:
        response.info["info"] = json.dumps(
            _verbose(record, data, ctx.logs.wait_complete(record.id, 0))
        )
    return response


def _current_inspect(ctx: ShimContext, record: ContainerRecord, verbose: bool) -> dict[str, Any]:
    """Docker's view of the container. kubelet asks for every container of a pod on each of
    its syncs: while the watcher follows Docker's events, the record's last inspect is current
    (every state change and update re-reads it), and an inspect per call would wait behind
    the container's own start in Docker. Verbose callers and an unsynced watcher ask Docker."""
    cached = record.inspected
    if cached is not None and not verbose and ctx.liveness.synced:
        return cached
    data = ctx.infra.inspect_raw(record.id)
    if data is None:
        ctx.containers.drop(record.id)
        raise NotFoundError(f"container {record.id!r} not found")
    apply_inspect(record, data)
    return data


def linux_resources(host_config: dict[str, Any]) -> api_pb2.LinuxContainerResources:
    """The resources in force, as Docker reports them (UpdateContainerResources changes them)."""
    return api_pb2.LinuxContainerResources(
        cpu_period=int(host_config.get("CpuPeriod") or 0),
        cpu_quota=int(host_config.get("CpuQuota") or 0),
        cpu_shares=int(host_config.get("CpuShares") or 0),
        memory_limit_in_bytes=int(host_config.get("Memory") or 0),
        oom_score_adj=int(host_config.get("OomScoreAdj") or 0),
        cpuset_cpus=str(host_config.get("CpusetCpus") or ""),
        cpuset_mems=str(host_config.get("CpusetMems") or ""),
        memory_swap_limit_in_bytes=max(0, int(host_config.get("MemorySwap") or 0)),
    )


def _mount(fields: dict[str, Any]) -> api_pb2.Mount:
    return api_pb2.Mount(
        container_path=fields["container_path"],
        host_path=fields["host_path"],
        readonly=bool(fields["readonly"]),
        selinux_relabel=bool(fields["selinux_relabel"]),
        propagation=fields["propagation"],
    )


def _verbose(record: ContainerRecord, data: dict[str, Any], log_complete: bool) -> dict[str, Any]:
    config = data.get("Config") or {}
    return {
        "sandboxID": record.sandbox_id,
        "pid": record.pid,
        "dockerName": str(data.get("Name", "")).lstrip("/"),
        "runtimeSpec": {
            "entrypoint": config.get("Entrypoint"),
            "cmd": config.get("Cmd"),
            "user": config.get("User"),
            "workingDir": config.get("WorkingDir"),
            "tty": config.get("Tty"),
        },
        "logComplete": log_complete,
    }
