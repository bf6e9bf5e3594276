"""Start-up: rebuild the view of every sandbox from checkpoints and Docker labels, then let CNI
garbage-collect what pods that no longer exist still hold."""

from __future__ import annotations

import base64
import logging

from cri_api import api_pb2
from shim.context import ShimContext
from shim.engine import labels as L
from shim.engine.protocol import InfraState
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
    live: dict[str, list[str]] = {}
    for record in ctx.store.all():
        if record.network and record.network_phase in (NetworkPhase.PENDING, NetworkPhase.ATTACHED):
            live.setdefault(record.network.network_name, []).append(record.id)
    ctx.network.garbage_collect(live)


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
