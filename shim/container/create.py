"""CreateContainer: a ContainerConfig becomes a Docker container in its sandbox's namespaces.

Reads as a recipe: validate, find the sandbox and the image, translate (pure), create, record.
Docker is the durable store (the create-time facts ride in a label), so the only thing that
can be left behind by a failure is the container itself, and it is created last.
"""

from __future__ import annotations

import logging
import os
import time

from cri_api import api_pb2
from shim.container.docker_config import Placement, create_body
from shim.container.refresh import record_from_inspect
from shim.context import ShimContext
from shim.engine import labels as L
from shim.engine.naming import container_name
from shim.engine.seccomp import read_profile
from shim.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NameConflictError,
    NotFoundError,
)
from shim.events.report import container_changed
from shim.logformat import log_fields
from shim.sandbox.validation import check_carriable_name, check_metadata_size
from shim.store.container_record import ContainerRecord, ContainerSpec
from shim.store.sandbox_record import SandboxRecord, SandboxState

log = logging.getLogger(__name__)


def create_container(ctx: ShimContext, request: api_pb2.CreateContainerRequest) -> str:
    config = request.config
    # 1. validate what needs no look-up
    if not config.HasField("metadata"):
        raise InvalidArgumentError("container config has no metadata")
    check_carriable_name("container config field metadata.name", config.metadata.name)
    if not config.image.image:
        raise InvalidArgumentError("container config field image.image is empty")
    check_metadata_size("container", config.labels, config.annotations)

    with ctx.store.locked_record(request.pod_sandbox_id) as sandbox:
        # 2. the sandbox: held locked, so RemovePodSandbox cannot miss this container
        if sandbox is None:
            raise NotFoundError(f"pod sandbox {request.pod_sandbox_id!r} not found")
        _require_ready(ctx, sandbox)
        sandbox_config = sandbox.sandbox_config()
        # 3. the image (kubelet pulls before it creates; so must every other client)
        image = ctx.infra.image_info(config.image.image)
        if image is None:
            raise NotFoundError(
                f"image {config.image.image!r} not found: pull it before creating a container"
            )
        # 4. translate
        spec = ContainerSpec(
            sandbox_id=sandbox.id,
            name=config.metadata.name,
            attempt=config.metadata.attempt,
            image=config.image.image,
            image_id=image.id,
            created_at=time.time_ns(),
            labels=dict(config.labels),
            annotations=dict(config.annotations),
            log_path=log_file(sandbox_config.log_directory, config.log_path),
            tty=config.tty,
            stdin=config.stdin,
            stdin_once=config.stdin_once,
            mounts=[_mount_fields(m) for m in config.mounts],
            user_specified_image=config.image.user_specified_image,
            image_name=image_name(config.image, image.id, image.repo_tags),
        )
        options = sandbox_config.linux.security_context.namespace_options
        placement = Placement(
            sandbox_id=sandbox.id,
            image_id=image.id,
            cgroup_parent=sandbox_config.linux.cgroup_parent,
            sandbox_host_network=sandbox.host_network,
            sandbox_host_ipc=options.ipc == api_pb2.NODE,
            labels=_labels(sandbox, spec),
            negative_oom_score_allowed=ctx.infra_oom_score_adj < 0,
        )
        body = create_body(config, placement, read_profile)
        name = container_name(spec.name, sandbox.name, sandbox.namespace, sandbox.uid, spec.attempt)
        # 5. create
        container_id = _create(ctx, body, name, sandbox.id)
        # 6. record
        ctx.containers.put(ContainerRecord(id=container_id, spec=spec))
    container_changed(ctx, container_id, sandbox.id, api_pb2.CONTAINER_CREATED_EVENT)
    log.info(
        "container %s: created %s in sandbox %s from %s",
        container_id,
        spec.name,
        sandbox.id,
        image.id,
        extra=log_fields(sandbox_id=sandbox.id, container_id=container_id),
    )
    return container_id


def image_name(spec: api_pb2.ImageSpec, image_id: str, repo_tags: list[str]) -> str:
    """kubelet creates from the image id and names the image in `user_specified_image`;
    other clients give a name. Status reports a name either way."""
    if spec.image != image_id and not spec.image.startswith("sha256:"):
        return spec.image
    if spec.user_specified_image:
        return spec.user_specified_image
    return repo_tags[0] if repo_tags else spec.image


def log_file(log_directory: str, log_path: str) -> str:
    """`<sandbox log_directory>/<log_path>`, or "" when the caller wants no log. The path is
    kubelet's `<container>/<restart>.log`: anything that would leave the directory is refused."""
    if not log_path:
        return ""
    if not log_directory.startswith("/"):
        raise InvalidArgumentError(
            f"log_path {log_path!r} is set but the sandbox's log_directory "
            f"{log_directory!r} is not an absolute path"
        )
    if log_path.startswith("/") or ".." in log_path.split("/") or "\x00" in log_path:
        raise InvalidArgumentError(
            f"log_path {log_path!r} must be a relative path inside the sandbox's log_directory"
        )
    return os.path.join(log_directory, log_path)


def _require_ready(ctx: ShimContext, sandbox: SandboxRecord) -> None:
    # The watcher's view of the infra containers when it has one (as PodSandboxStatus): an
    # inspect would wait behind other containers' starts in Docker while pods start in bulk.
    running_now = ctx.liveness.running()
    if running_now is not None:
        running = sandbox.id in running_now
    else:
        infra = ctx.infra.inspect(sandbox.id)
        running = infra is not None and infra.running
    if sandbox.state is not SandboxState.READY or not running:
        raise FailedPreconditionError(
            f"pod sandbox {sandbox.id} is not ready: containers can only be created in a ready"
            " sandbox"
        )


def _create(ctx: ShimContext, body: dict[str, object], name: str, sandbox_id: str) -> str:
    """Create; on a name conflict with a container of ours that is not running (a create that
    timed out after Docker made it, a retried CreateContainer), remove it and try once more,
    as cri-dockerd does. A running namesake is a real conflict."""
    try:
        return ctx.infra.create_container(body, name)
    except NameConflictError:
        data = ctx.infra.inspect_raw(name)
        stale = record_from_inspect(data) if data is not None else None
        if stale is None or stale.sandbox_id != sandbox_id or stale.pid:
            raise
        log.warning("container %s: removing stale %s to reuse its name", stale.id, name)
        ctx.logs.forget(stale.id)
        ctx.containers.drop(stale.id)
        ctx.infra.remove(stale.id)
        return ctx.infra.create_container(body, name)


def _labels(sandbox: SandboxRecord, spec: ContainerSpec) -> dict[str, str]:
    return {
        L.POD_NAME: sandbox.name,
        L.POD_NAMESPACE: sandbox.namespace,
        L.POD_UID: sandbox.uid,
        L.SANDBOX_ID: sandbox.id,
        L.CONTAINER_TYPE: L.TYPE_CONTAINER,
        L.CONTAINER_NAME: spec.name,
        L.ATTEMPT: str(spec.attempt),
        L.LOG_PATH: spec.log_path,
        L.SPEC: spec.to_label(),
    }


def _mount_fields(mount: api_pb2.Mount) -> dict[str, object]:
    return {
        "container_path": mount.container_path,
        "host_path": mount.host_path,
        "readonly": mount.readonly,
        "selinux_relabel": mount.selinux_relabel,
        "propagation": int(mount.propagation),
    }
