"""The CRI view of a container record, shared by ContainerStatus and ListContainers."""

from __future__ import annotations

from cri_api import api_pb2
from shim.context import ShimContext
from shim.store.container_record import ContainerRecord, ContainerState

_STATES = {
    ContainerState.CREATED: api_pb2.CONTAINER_CREATED,
    ContainerState.RUNNING: api_pb2.CONTAINER_RUNNING,
    ContainerState.EXITED: api_pb2.CONTAINER_EXITED,
    ContainerState.UNKNOWN: api_pb2.CONTAINER_UNKNOWN,
}


def reported_state(ctx: ShimContext, record: ContainerRecord) -> api_pb2.ContainerState.ValueType:
    """EXITED only once the container's log is complete (containerd's rule: a client that sees
    EXITED and reads the log finds all of it); until then it is still RUNNING."""
    if (
        record.state is ContainerState.EXITED
        and record.spec.log_path
        and record.started_at
        and not ctx.logs.wait_complete(record.id, 0)
    ):
        return api_pb2.CONTAINER_RUNNING
    return _STATES[record.state]


def metadata(record: ContainerRecord) -> api_pb2.ContainerMetadata:
    return api_pb2.ContainerMetadata(name=record.spec.name, attempt=record.spec.attempt)


def image_spec(record: ContainerRecord) -> api_pb2.ImageSpec:
    spec = record.spec
    return api_pb2.ImageSpec(
        image=spec.image_name or spec.image, user_specified_image=spec.user_specified_image
    )


def to_container(ctx: ShimContext, record: ContainerRecord) -> api_pb2.Container:
    state = reported_state(ctx, record)
    cached = record.cri_view
    if isinstance(cached, api_pb2.Container) and cached.state == state:
        return cached
    record.cri_view = view = _build_container(record, state)
    return view


def _build_container(
    record: ContainerRecord, state: api_pb2.ContainerState.ValueType
) -> api_pb2.Container:
    spec = record.spec
    return api_pb2.Container(
        id=record.id,
        pod_sandbox_id=spec.sandbox_id,
        metadata=metadata(record),
        image=image_spec(record),
        image_ref=spec.image_id,
        image_id=spec.image_id,
        state=state,
        created_at=spec.created_at,
        labels=spec.labels,
        annotations=spec.annotations,
    )
