"""Start-up: rebuild the view of every sandbox from checkpoints and Docker labels and of every
container from Docker alone, resume their CRI logs, then let CNI garbage-collect what pods
that no longer exist still hold."""

from __future__ import annotations

import base64
import logging
import os

from cnilib.atomic import sweep_temp_files
from cri_api import api_pb2
from shim.container.refresh import record_from_inspect
from shim.context import ShimContext
from shim.engine import labels as L
from shim.engine.protocol import InfraState
from shim.sandbox.netns_pin import unpin
from shim.store.container_record import ContainerState
from shim.store.sandbox_record import NetworkPhase, SandboxRecord

log = logging.getLogger(__name__)


def recover(ctx: ShimContext) -> None:
    records = ctx.store.load()
    known = {r.id for r in records}
    for container in ctx.infra.list_infra():
        if container.id not in known:
            # Created, then the shim died before the checkpoint: no CNI work was done yet
            # (the checkpoint always precedes it), so it only needs stop and remove.
            _adopt(ctx, container)
    log.info("recovered %d sandboxes", len(ctx.store.all()))
    unpin_orphans(ctx)
    for directory in (
        os.path.join(ctx.config.root_directory, "sandboxes"),
        os.path.join(ctx.config.cni_cache_dir, "results"),
    ):
        removed = sweep_temp_files(directory)
        if removed:
            log.info("removed %d stale temporary files in %s", len(removed), directory)
    recover_containers(ctx)


def collect_garbage(ctx: ShimContext) -> None:
    """CNI GC of every cached network against the sandboxes the store knows. Run after
    `recover` and before any new pod gets a network (RunPodSandbox waits for it), so that no
    attachment made meanwhile can be mistaken for a leftover."""
    live: dict[str, list[str]] = {}
    for record in ctx.store.all():
        if record.network and record.network_phase in (NetworkPhase.PENDING, NetworkPhase.ATTACHED):
            live.setdefault(record.network.network_name, []).append(record.id)
    ctx.network.garbage_collect(live)


def unpin_orphans(ctx: ShimContext) -> None:
    """A pin whose sandbox has no checkpoint (lost while the shim was down) would keep an
    empty network namespace alive for ever, and make the root directory unremovable."""
    netns_dir = os.path.join(ctx.config.root_directory, "netns")
    try:
        entries = os.listdir(netns_dir)
    except FileNotFoundError:
        return
    for entry in entries:
        if ctx.store.get(entry) is None:
            log.warning("sandbox %s: unpinning its network namespace, it has no checkpoint", entry)
            try:
                unpin(os.path.join(netns_dir, entry))
            except OSError as err:
                log.error("sandbox %s: failed to unpin its network namespace: %s", entry, err)


def recover_containers(ctx: ShimContext) -> None:
    """Every container of ours that Docker has, with its log resumed where the CRI file ends:
    running ones are followed again, exited ones drained (they may have written while the shim
    was down). Docker kept their output meanwhile, so no line is lost."""
    for summary in ctx.infra.list_containers():
        data = ctx.infra.inspect_raw(summary["Id"])
        record = record_from_inspect(data) if data is not None else None
        if record is None:
            continue
        ctx.containers.put(record)
        spec = record.spec
        if not spec.log_path:
            continue
        if record.state is ContainerState.RUNNING:
            ctx.logs.follow(record.id, spec.log_path, spec.tty)
        elif record.started_at:
            ctx.logs.drain(record.id, spec.log_path, spec.tty)
    log.info("recovered %d containers", len(ctx.containers.all()))


def _adopt(ctx: ShimContext, container: InfraState) -> None:
    labels = container.labels
    metadata = api_pb2.PodSandboxMetadata(
        name=labels.get(L.POD_NAME, ""),
        namespace=labels.get(L.POD_NAMESPACE, ""),
        uid=labels.get(L.POD_UID, ""),
        attempt=int(labels.get(L.ATTEMPT, "0") or 0),
    )
    config = api_pb2.PodSandboxConfig(metadata=metadata)
    record = SandboxRecord(
        id=container.id,
        name=metadata.name,
        namespace=metadata.namespace,
        uid=metadata.uid,
        attempt=metadata.attempt,
        created_at=container.created_at_ns,
        config_b64=base64.b64encode(config.SerializeToString()).decode(),
    )
    log.warning("sandbox %s: found without a checkpoint; adopted as NOTREADY", container.id)
    ctx.store.save(record)
