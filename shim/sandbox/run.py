"""RunPodSandbox: what dockershim's SetUpPod did, with every step undone on failure."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable

from cnilib.types import NetworkConfigList
from cri_api import api_pb2
from shim.context import ShimContext
from shim.engine import labels as L
from shim.engine.naming import sandbox_name
from shim.engine.proc_tree import process_start_time
from shim.engine.protocol import InfraSpec, InfraState
from shim.engine.seccomp import read_profile, seccomp_options
from shim.errors import (
    AlreadyExistsError,
    CancelledError,
    ImageNotPresentError,
    InfraRuntimeError,
    NameConflictError,
    ShimError,
    UnavailableError,
)
from shim.events.report import sandbox_changed
from shim.logformat import log_fields
from shim.sandbox.cni_translate import capability_args, cni_args, resolv_conf
from shim.sandbox.netns_pin import pin, same_namespace, unpin
from shim.sandbox.step_timer import StepTimer
from shim.sandbox.validation import validate_sandbox_config
from shim.store.sandbox_record import NetworkPhase, SandboxRecord, SandboxState, name_key
from shim.undo import UndoStack

log = logging.getLogger(__name__)

# The undo steps of RunPodSandbox, named once: the rollback's outcome is read by name.
UNDO_CONTAINER = "remove infra container"
UNDO_PIN = "unpin network namespace"
UNDO_NETWORK = "tear down network"


def run_pod_sandbox(
    ctx: ShimContext,
    request: api_pb2.RunPodSandboxRequest,
    wanted: Callable[[], bool] = lambda: True,
) -> str:
    """`wanted` says whether the caller still waits (gRPC's is_active): a call whose client
    gave up acquires nothing more, and gives back what it took."""
    config = request.config
    steps = StepTimer(ctx.metrics.observe_sandbox_step)
    # 1. name: validate, and hold the pod's identity so duplicate calls queue up.
    validate_sandbox_config(config, request.runtime_handler, ctx.infra.cgroup_driver())
    meta = config.metadata
    key = name_key(meta.name, meta.namespace, meta.uid, meta.attempt)
    with ctx.store.locked(f"name:{key}"):
        existing = ctx.store.find_by_name_key(key)
        if existing is not None:
            return _reuse(ctx, existing)
        host_network = _host_network(config)
        # Refuse before creating anything when pods cannot get a network.
        network = None if host_network else ctx.network.current()
        steps.mark("validate")

        # 2. image + 3. create: the infra image is pulled only when absent, which the create
        # call itself tells us (no extra round trip on the common path).
        spec = _infra_spec(ctx, config, ctx.config.pod_infra_container_image, host_network)
        _check_wanted(wanted, key, "creating its infra container")
        sandbox_id = _create_infra(ctx, spec)
        steps.mark("create")
        undo = UndoStack(f"sandbox {sandbox_id}")
        undo.push(UNDO_CONTAINER, lambda: ctx.infra.remove(sandbox_id))
        with ctx.store.locked(sandbox_id):
            record = SandboxRecord(
                id=sandbox_id,
                name=meta.name,
                namespace=meta.namespace,
                uid=meta.uid,
                attempt=meta.attempt,
                created_at=time.time_ns(),
                config_b64=base64.b64encode(config.SerializeToString()).decode(),
                host_network=host_network,
                runtime_handler=request.runtime_handler,
                labels=dict(config.labels),
                annotations=dict(config.annotations),
            )
            try:
                _create_to_ready(ctx, record, config, network, undo, wanted, steps)
            except Exception as err:
                _give_back(ctx, record, undo)
                if isinstance(err, ShimError):
                    raise
                raise ShimError(f"failed to run pod sandbox {key}: {err}") from err
            undo.commit()
    # containerd's convention: a sandbox's events carry its id as the container id.
    sandbox_changed(ctx, sandbox_id, api_pb2.CONTAINER_CREATED_EVENT)
    sandbox_changed(ctx, sandbox_id, api_pb2.CONTAINER_STARTED_EVENT)
    log.info(
        "sandbox %s: ready (%s/%s) ips=%s",
        sandbox_id,
        meta.namespace,
        meta.name,
        record.ips,
        extra=log_fields(sandbox_id=sandbox_id),
    )
    return sandbox_id


def _create_to_ready(
    ctx: ShimContext,
    record: SandboxRecord,
    config: api_pb2.PodSandboxConfig,
    network: NetworkConfigList | None,
    undo: UndoStack,
    wanted: Callable[[], bool],
    steps: StepTimer,
) -> None:
    sandbox_id = record.id
    # 4. checkpoint: from here on a restarted shim knows this sandbox.
    ctx.store.save(record)
    steps.mark("checkpoint")

    # 5. start
    _check_wanted(wanted, sandbox_id, "starting it")
    ctx.infra.start(sandbox_id)
    ctx.liveness.mark(sandbox_id, True)
    if record.host_network:
        steps.mark("start")
        _mark_ready(ctx, record, steps)
        return
    started = _running(ctx, sandbox_id)  # the one inspect: its pid and resolv.conf
    if config.HasField("dns_config"):
        ctx.infra.write_resolv_conf(started, resolv_conf(config.dns_config))
    steps.mark("start")

    # 6. netns: pin the namespace itself, so no later step depends on the pid staying ours.
    pid = started.pid
    born = process_start_time(pid)
    netns_path = ctx.netns_path(sandbox_id)
    pin(pid, netns_path)
    undo.push(UNDO_PIN, lambda: unpin(netns_path))
    # What was pinned is the infra container's namespace only if its process still lives: a
    # PID reused after the container exited has another start time (no Docker round trip).
    alive = born is not None and process_start_time(pid) == born
    if not alive or not same_namespace(netns_path, f"/proc/{pid}/ns/net"):
        raise InfraRuntimeError(f"infra container {sandbox_id} exited while its netns was pinned")
    record.netns_path = netns_path
    steps.mark("pin")

    # 7. network: teardown is registered *before* ADD, since a failed ADD may hold an address.
    assert network is not None, "a pod without host network always has a network chosen"
    _check_wanted(wanted, sandbox_id, "setting up its network")
    # Start-up GC must be over first: it would take this pod's fresh attachment for a leftover.
    if not ctx.collected.wait(ctx.config.cni_plugin_timeout):
        raise UnavailableError(
            f"sandbox {sandbox_id}: start-up CNI garbage collection is still running"
        )
    steps.mark("wait_cni_gc")
    attachment = ctx.network.attachment_for(
        network,
        cni_args(config.metadata, sandbox_id),
        capability_args(config, ctx.pod_cidrs.cidrs),
    )
    record.network = attachment
    record.network_phase = NetworkPhase.PENDING
    ctx.store.save(record)
    # A failed DEL keeps the pin and the container: StopPodSandbox retries DEL with them.
    undo.push(
        UNDO_NETWORK,
        lambda: ctx.network.teardown(sandbox_id, netns_path, attachment),
        keeps_earlier=True,
    )
    result = ctx.network.setup(sandbox_id, netns_path, attachment)
    attachment.result = result.to_dict()
    record.network_phase = NetworkPhase.ATTACHED
    steps.mark("network")

    # 8. ready
    _mark_ready(ctx, record, steps)


def _check_wanted(wanted: Callable[[], bool], subject: str, step: str) -> None:
    if not wanted():
        raise CancelledError(f"pod sandbox {subject}: the caller has gone; not {step}")


def _create_infra(ctx: ShimContext, spec: InfraSpec) -> str:
    """Create the infra container, pulling its image only when absent. A name conflict is a
    container of an earlier call that escaped before its undo was registered (a create that
    timed out after Docker made it): ours, for this pod, and without a checkpoint, it never
    got a network, so it is removed and the name reused (cri-dockerd's
    recoverFromCreationConflictIfNeeded); anything else is a real conflict."""
    for attempt in range(2):
        try:
            try:
                return ctx.infra.create(spec)
            except ImageNotPresentError:
                log.info("pulling infra image %s", spec.image)
                ctx.infra.pull_image(spec.image)
                return ctx.infra.create(spec)
        except NameConflictError:
            stale = ctx.infra.inspect(spec.name)
            if (
                attempt
                or stale is None
                or ctx.store.get(stale.id) is not None
                or stale.labels.get(L.OWNER) != ctx.owner
                or any(stale.labels.get(k) != spec.labels[k] for k in _IDENTITY_LABELS)
            ):
                raise
            log.warning("sandbox %s: removing an escaped earlier create of %s", stale.id, spec.name)
            ctx.infra.remove(stale.id)
    raise AssertionError("unreachable")


_IDENTITY_LABELS = (L.POD_NAME, L.POD_NAMESPACE, L.POD_UID, L.ATTEMPT)


def _mark_ready(ctx: ShimContext, record: SandboxRecord, steps: StepTimer) -> None:
    record.state = SandboxState.READY
    record.startup_steps = steps.as_json()  # checkpointed with READY
    ctx.store.save(record)


def _give_back(ctx: ShimContext, record: SandboxRecord, undo: UndoStack) -> None:
    """Undo what the failed run acquired. If an undo failed, keep the checkpoint (NOTREADY,
    network still PENDING) so that StopPodSandbox / RemovePodSandbox can finish the job."""
    failures = undo.rollback()
    if not failures:
        ctx.store.delete(record.id)
        return
    record.state = SandboxState.NOTREADY
    if not undo.failed(UNDO_NETWORK):
        record.network_phase = NetworkPhase.DETACHED if record.network else NetworkPhase.NONE
    try:
        ctx.store.save(record)
    except OSError as err:
        log.error(
            "sandbox %s: failed to keep its checkpoint after a failed undo: %s", record.id, err
        )


def _reuse(ctx: ShimContext, existing: SandboxRecord) -> str:
    """A retried RunPodSandbox (kubelet's own call timed out) gets the sandbox it asked for, as
    CRI-O does, rather than a "name is reserved" error that makes kubelet wait and retry."""
    state = ctx.infra.inspect(existing.id)
    if existing.state is SandboxState.READY and state is not None and state.running:
        log.info(
            "sandbox %s: RunPodSandbox repeated for %s, returning it",
            existing.id,
            existing.name_key,
        )
        return existing.id
    raise AlreadyExistsError(
        f"pod sandbox name {existing.name_key} is reserved for sandbox {existing.id}, "
        "which is not ready; stop and remove it first"
    )


def _host_network(config: api_pb2.PodSandboxConfig) -> bool:
    options = config.linux.security_context.namespace_options
    return bool(options.network == api_pb2.NODE)


def _infra_spec(
    ctx: ShimContext, config: api_pb2.PodSandboxConfig, image: str, host_network: bool
) -> InfraSpec:
    meta = config.metadata
    options = config.linux.security_context.namespace_options
    labels = dict(config.labels)
    labels.update(
        {
            L.POD_NAME: meta.name,
            L.POD_NAMESPACE: meta.namespace,
            L.POD_UID: meta.uid,
            L.ATTEMPT: str(meta.attempt),
            L.CONTAINER_TYPE: L.TYPE_SANDBOX,
            L.CONTAINER_NAME: "POD",
        }
    )
    return InfraSpec(
        name=sandbox_name(meta.name, meta.namespace, meta.uid, meta.attempt),
        image=image,
        hostname=config.hostname,
        labels=labels,
        host_network=host_network,
        oom_score_adj=ctx.infra_oom_score_adj,
        host_pid=options.pid == api_pb2.NODE,
        host_ipc=options.ipc == api_pb2.NODE,
        cgroup_parent=config.linux.cgroup_parent,
        sysctls=dict(config.linux.sysctls),
        # The pod's profile applies to its infra container too, as cri-dockerd does; unset is
        # unconfined, not Docker's default (which also costs runc ~17 ms per start here).
        security_opt=tuple(seccomp_options(config.linux.security_context, read_profile)),
    )


def _running(ctx: ShimContext, sandbox_id: str) -> InfraState:
    state = ctx.infra.inspect(sandbox_id)
    if state is None or not state.running or state.pid <= 0:
        raise InfraRuntimeError(f"infra container {sandbox_id} is not running after start")
    return state
