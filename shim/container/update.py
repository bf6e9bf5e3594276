"""UpdateContainerResources: kubelet's in-place resize and CPU manager go through `docker
update`. Memory and memory+swap move together (no swap unless kubelet asks for it)."""

from __future__ import annotations

import logging

from cri_api import api_pb2
from shim.container.docker_config import resources
from shim.container.refresh import refresh
from shim.context import ShimContext
from shim.errors import NotFoundError

log = logging.getLogger(__name__)

# The fields `docker update` can change on a live container (not the OOM score).
_UPDATABLE = (
    "Memory",
    "MemorySwap",
    "CpuShares",
    "CpuQuota",
    "CpuPeriod",
    "CpusetCpus",
    "CpusetMems",
)


def update_container_resources(
    ctx: ShimContext, request: api_pb2.UpdateContainerResourcesRequest
) -> None:
    with ctx.containers.locked_record(request.container_id) as record:
        if record is None:
            raise NotFoundError(f"container {request.container_id!r} not found")
        wanted = resources(request.linux, negative_oom_allowed=True)
        update = {k: v for k, v in wanted.items() if k in _UPDATABLE}
        if update:
            ctx.infra.update_resources(record.id, update)
            refresh(ctx, record)  # ContainerStatus reports the new limits from this read
        log.info("container %s: resources updated: %s", record.id, update)
