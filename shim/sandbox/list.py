"""ListPodSandbox: every sandbox the store knows, filtered by id prefix, state and labels."""

from __future__ import annotations

from cri_api import api_pb2
from shim.context import ShimContext
from shim.sandbox.convert import sandbox_metadata, sandbox_state


def list_pod_sandbox(
    ctx: ShimContext, request: api_pb2.ListPodSandboxRequest
) -> api_pb2.ListPodSandboxResponse:
    flt = request.filter if request.HasField("filter") else None
    # From memory while Docker's event stream is followed; from Docker while it is not.
    running = ctx.liveness.running()
    if running is None:
        running = {c.id for c in ctx.infra.list_infra() if c.running}
    items = []
    for record in sorted(ctx.store.all(), key=lambda r: r.created_at):
        state = sandbox_state(record, record.id in running)
        if flt is not None:
            if flt.id and not record.id.startswith(flt.id):
                continue
            if flt.HasField("state") and flt.state.state != state:
                continue
            if any(record.labels.get(k) != v for k, v in flt.label_selector.items()):
                continue
        items.append(
            api_pb2.PodSandbox(
                id=record.id,
                metadata=sandbox_metadata(record),
                state=state,
                created_at=record.created_at,
                labels=record.labels,
                annotations=record.annotations,
                runtime_handler=record.runtime_handler,
            )
        )
    return api_pb2.ListPodSandboxResponse(items=items)
