"""ListContainers, answered from the shim's own store (kubelet relists every second)."""

from __future__ import annotations

from cri_api import api_pb2
from shim.container.convert import to_container
from shim.context import ShimContext


def list_containers(
    ctx: ShimContext, request: api_pb2.ListContainersRequest
) -> api_pb2.ListContainersResponse:
    flt = request.filter if request.HasField("filter") else None
    items = []
    for record in sorted(ctx.containers.all(), key=lambda r: r.spec.created_at):
        if flt is not None:
            if flt.id and not record.id.startswith(flt.id):
                continue
            if flt.pod_sandbox_id and not record.sandbox_id.startswith(flt.pod_sandbox_id):
                continue
            if any(record.spec.labels.get(k) != v for k, v in flt.label_selector.items()):
                continue
        container = to_container(ctx, record)
        if flt is not None and flt.HasField("state") and flt.state.state != container.state:
            continue
        items.append(container)
    return api_pb2.ListContainersResponse(containers=items)
