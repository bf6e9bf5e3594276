"""Keeping a container record in step with Docker, and rebuilding one from Docker alone."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from cri_api import api_pb2
from shim.container.docker_state import run_state
from shim.context import ShimContext
from shim.engine import labels as L
from shim.events.report import container_changed
from shim.store.container_record import ContainerRecord, ContainerSpec
from shim.timestamps import rfc3339_ns

log = logging.getLogger(__name__)


def refresh(ctx: ShimContext, record: ContainerRecord) -> ContainerRecord | None:
    """Re-read the container's run state from Docker into `record`; None (and the record
    dropped) when Docker no longer has the container."""
    data = ctx.infra.inspect_raw(record.id)
    if data is None:
        log.info("container %s: gone from Docker, forgetting it", record.id)
        ctx.containers.drop(record.id)
        container_changed(ctx, record.id, record.sandbox_id, api_pb2.CONTAINER_DELETED_EVENT)
        return None
    apply_inspect(record, data)
    return record


def apply_inspect(record: ContainerRecord, data: dict[str, Any]) -> None:
    record.inspected = data
    got = run_state(data, record.spec.created_at)
    record.state = got.state
    record.pid = got.pid
    record.started_at = got.started_at
    record.finished_at = got.finished_at
    record.exit_code = got.exit_code
    record.reason = got.reason
    record.message = got.message


def record_from_inspect(data: dict[str, Any]) -> ContainerRecord | None:
    """A record rebuilt from `docker inspect` (shim restart); None for a container that is
    not one of ours or whose label cannot be read."""
    labels = (data.get("Config") or {}).get("Labels") or {}
    raw = labels.get(L.SPEC)
    if raw is None:
        return None
    try:
        spec = ContainerSpec.from_label(raw)
    except (ValueError, TypeError) as err:
        log.error("container %s: unreadable %s label: %s", data.get("Id"), L.SPEC, err)
        return None
    if not spec.created_at:
        spec = dataclasses.replace(spec, created_at=rfc3339_ns(data.get("Created", "")))
    record = ContainerRecord(id=str(data["Id"]), spec=spec)
    apply_inspect(record, data)
    return record
