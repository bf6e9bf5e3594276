"""PodSandboxStatus: what the checkpoint says, corrected by what Docker says
(a READY sandbox whose infra container died is NOTREADY, so kubelet recreates it)."""

from __future__ import annotations

import json
import time
from typing import Any

from cri_api import api_pb2
from shim.container.status import container_status
from shim.context import ShimContext
from shim.errors import NotFoundError
from shim.sandbox.convert import sandbox_metadata, sandbox_state
from shim.store.sandbox_record import SandboxRecord


def pod_sandbox_status(
    ctx: ShimContext, sandbox_id: str, verbose: bool
) -> api_pb2.PodSandboxStatusResponse:
    # Stamped before anything is read: kubelet's Evented PLEG keeps this answer only if it is
    # newer than what an event told it, so the stamp must not postdate the data.
    timestamp = time.time_ns()
    full_id = ctx.store.resolve(sandbox_id)  # NOT_FOUND for an absent sandbox: kubelet checks
    record = ctx.store.get(full_id)
    if record is None:  # removed between the two look-ups
        raise NotFoundError(f"pod sandbox {sandbox_id!r} not found")
    # kubelet asks this for every pod on each of its syncs: the watcher's view of which infra
    # containers run answers it without Docker, whose inspect waits behind a container's
    # start (seconds while pods start in bulk). Verbose callers and an unsynced view ask Docker.
    exists: bool | None = None
    running_now = None if verbose else ctx.liveness.running()
    if running_now is not None:
        running = full_id in running_now
    else:
        infra = ctx.infra.inspect(full_id)
        exists, running = infra is not None, infra is not None and infra.running
    response = api_pb2.PodSandboxStatusResponse(
        status=sandbox_status_message(record, running),
        timestamp=timestamp,
        # kubelet with EventedPLEG takes the pod's containers from here, not from
        # ContainerStatus calls of its own (kuberuntime's GetPodStatus).
        containers_statuses=containers_statuses(ctx, record.id),
    )
    if verbose:
        response.info["info"] = json.dumps(_verbose_info(record, bool(exists), running))
    return response


def sandbox_status_message(record: SandboxRecord, running: bool) -> api_pb2.PodSandboxStatus:
    status = api_pb2.PodSandboxStatus(
        id=record.id,
        metadata=sandbox_metadata(record),
        state=sandbox_state(record, running),
        created_at=record.created_at,
        labels=record.labels,
        annotations=record.annotations,
        runtime_handler=record.runtime_handler,
    )
    ips = record.ips
    if ips and sandbox_state(record, running) == api_pb2.SANDBOX_READY:
        status.network.ip = ips[0]
        status.network.additional_ips.extend(api_pb2.PodIP(ip=ip) for ip in ips[1:])
    options = status.linux.namespaces.options
    config = record.sandbox_config()
    ns_config = config.linux.security_context.namespace_options
    options.network = api_pb2.NODE if record.host_network else api_pb2.POD
    options.pid = api_pb2.NODE if ns_config.pid == api_pb2.NODE else api_pb2.CONTAINER
    options.ipc = api_pb2.NODE if ns_config.ipc == api_pb2.NODE else api_pb2.POD
    return status


def containers_statuses(ctx: ShimContext, sandbox_id: str) -> list[api_pb2.ContainerStatus]:
    statuses = []
    for container in ctx.containers.of_sandbox(sandbox_id):
        request = api_pb2.ContainerStatusRequest(container_id=container.id)
        try:
            statuses.append(container_status(ctx, request).status)
        except NotFoundError:  # removed meanwhile
            continue
    return statuses


def _verbose_info(record: SandboxRecord, exists: bool, running: bool) -> dict[str, Any]:
    network = record.network
    return {
        "sandboxID": record.id,
        "state": record.state.value,
        "infraContainer": {"exists": exists, "running": running},
        "netnsPath": record.netns_path,
        "hostNetwork": record.host_network,
        "networkPhase": record.network_phase.value,
        "cniNetwork": network.network_name if network else None,
        "cniConfigFile": network.conf_source if network else None,
        "cniArgs": dict(network.cni_args) if network else None,
        "cniCapabilityArgs": network.capability_args if network else None,
        "cniResult": network.result if network else None,
        # Where RunPodSandbox spent its time, step by step (shim.sandbox.step_timer).
        "startupSteps": list(record.startup_steps),
    }
