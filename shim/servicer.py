"""The gRPC servicers: a few lines per RPC, all behaviour lives in the per-verb modules."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from cri_api import api_pb2
from shim import runtime_info
from shim.container.create import create_container
from shim.container.exec_sync import exec_sync
from shim.container.get_events import get_container_events
from shim.container.list import list_containers
from shim.container.remove import remove_container
from shim.container.reopen_log import reopen_container_log
from shim.container.start import start_container
from shim.container.stats import container_stats, list_container_stats
from shim.container.status import container_status
from shim.container.stop import stop_container
from shim.container.update import update_container_resources
from shim.context import ShimContext
from shim.errors import ResourceExhaustedError, UnavailableError
from shim.grpc_errors import maps_errors
from shim.image.fs_info import image_fs_info
from shim.image.list import list_images
from shim.image.pull import pull_image
from shim.image.remove import remove_image
from shim.image.status import image_status
from shim.sandbox.list import list_pod_sandbox
from shim.sandbox.remove import remove_pod_sandbox
from shim.sandbox.run import run_pod_sandbox
from shim.sandbox.stats import list_pod_sandbox_stats, pod_sandbox_stats
from shim.sandbox.status import pod_sandbox_status
from shim.sandbox.stop import stop_pod_sandbox
from shim.streaming.attach import attach_url
from shim.streaming.exec import exec_url
from shim.streaming.port_forward import port_forward_url
from shim.streaming.server import StreamingServer

Ctx = grpc.ServicerContext


# Answered from the first moment, before start-up recovery is over (kubelet's health checks).
_UNGATED = frozenset({"Version", "Status"})
# How long a call waits for start-up recovery before it is told to come back.
RECOVERY_WAIT_S = 30.0
# The calls that can take long (Docker work, CNI plugins, commands in containers). At most
# LIFECYCLE_LIMIT of them run at once, so the server's threads (server.MAX_WORKERS, more than
# this) always leave room for Version, Status, the lists and the status calls kubelet makes
# every second: a node whose Status waits behind stuck pod starts is marked NotReady.
LIFECYCLE = frozenset(
    {
        "RunPodSandbox",
        "StopPodSandbox",
        "RemovePodSandbox",
        "CreateContainer",
        "StartContainer",
        "StopContainer",
        "RemoveContainer",
        "UpdateContainerResources",
        "ExecSync",
        "PullImage",
        "RemoveImage",
    }
)
LIFECYCLE_LIMIT = 64


class _Gated:
    """Every RPC but Version and Status waits until start-up recovery has rebuilt the store,
    so that no caller sees a half-rebuilt view (kubelet would recreate "missing" pods); the
    lifecycle calls also pass an admission limit shared by both services."""

    _lifecycle_slots = threading.BoundedSemaphore(LIFECYCLE_LIMIT)

    def __init__(self, ctx: ShimContext) -> None:
        self._ctx = ctx

    @contextmanager
    def gate(self, rpc: str, context: Ctx) -> Iterator[None]:
        if rpc not in _UNGATED and not self._ctx.recovered.is_set():
            remaining = context.time_remaining()
            # Answer UNAVAILABLE a little before the caller's deadline, so it learns why.
            wait = RECOVERY_WAIT_S if remaining is None else min(RECOVERY_WAIT_S, remaining - 0.5)
            if not self._ctx.recovered.wait(wait):
                raise UnavailableError(
                    f"{rpc}: cri-shim is still rebuilding its state after start-up"
                    " (is the Docker engine up?)"
                )
        if rpc not in LIFECYCLE:
            yield
            return
        if not self._lifecycle_slots.acquire(blocking=False):
            raise ResourceExhaustedError(
                f"{rpc}: {LIFECYCLE_LIMIT} lifecycle calls are already running; try again"
            )
        try:
            yield
        finally:
            self._lifecycle_slots.release()


class RuntimeService(_Gated):
    """runtime.v1.RuntimeService: the RPCs cri-shim offers (the rest answer UNIMPLEMENTED)."""

    @maps_errors
    def Version(self, request: api_pb2.VersionRequest, context: Ctx) -> api_pb2.VersionResponse:
        return runtime_info.version()

    @maps_errors
    def Status(self, request: api_pb2.StatusRequest, context: Ctx) -> api_pb2.StatusResponse:
        return runtime_info.status(self._ctx, request.verbose)

    @maps_errors
    def RuntimeConfig(
        self, request: api_pb2.RuntimeConfigRequest, context: Ctx
    ) -> api_pb2.RuntimeConfigResponse:
        return runtime_info.runtime_config(self._ctx)

    @maps_errors
    def UpdateRuntimeConfig(
        self, request: api_pb2.UpdateRuntimeConfigRequest, context: Ctx
    ) -> api_pb2.UpdateRuntimeConfigResponse:
        runtime_info.update_runtime_config(self._ctx, request)
        return api_pb2.UpdateRuntimeConfigResponse()

    @maps_errors
    def RunPodSandbox(
        self, request: api_pb2.RunPodSandboxRequest, context: Ctx
    ) -> api_pb2.RunPodSandboxResponse:
        sandbox_id = run_pod_sandbox(self._ctx, request, wanted=context.is_active)
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)

    @maps_errors
    def StopPodSandbox(
        self, request: api_pb2.StopPodSandboxRequest, context: Ctx
    ) -> api_pb2.StopPodSandboxResponse:
        stop_pod_sandbox(self._ctx, request.pod_sandbox_id)
        return api_pb2.StopPodSandboxResponse()

    @maps_errors
    def RemovePodSandbox(
        self, request: api_pb2.RemovePodSandboxRequest, context: Ctx
    ) -> api_pb2.RemovePodSandboxResponse:
        remove_pod_sandbox(self._ctx, request.pod_sandbox_id)
        return api_pb2.RemovePodSandboxResponse()

    @maps_errors
    def PodSandboxStatus(
        self, request: api_pb2.PodSandboxStatusRequest, context: Ctx
    ) -> api_pb2.PodSandboxStatusResponse:
        return pod_sandbox_status(self._ctx, request.pod_sandbox_id, request.verbose)

    @maps_errors
    def ListPodSandbox(
        self, request: api_pb2.ListPodSandboxRequest, context: Ctx
    ) -> api_pb2.ListPodSandboxResponse:
        return list_pod_sandbox(self._ctx, request)

    @maps_errors
    def CreateContainer(
        self, request: api_pb2.CreateContainerRequest, context: Ctx
    ) -> api_pb2.CreateContainerResponse:
        return api_pb2.CreateContainerResponse(container_id=create_container(self._ctx, request))

    @maps_errors
    def StartContainer(
        self, request: api_pb2.StartContainerRequest, context: Ctx
    ) -> api_pb2.StartContainerResponse:
        start_container(self._ctx, request.container_id)
        return api_pb2.StartContainerResponse()

    @maps_errors
    def StopContainer(
        self, request: api_pb2.StopContainerRequest, context: Ctx
    ) -> api_pb2.StopContainerResponse:
        stop_container(self._ctx, request.container_id, request.timeout)
        return api_pb2.StopContainerResponse()

    @maps_errors
    def RemoveContainer(
        self, request: api_pb2.RemoveContainerRequest, context: Ctx
    ) -> api_pb2.RemoveContainerResponse:
        remove_container(self._ctx, request.container_id)
        return api_pb2.RemoveContainerResponse()

    @maps_errors
    def ListContainers(
        self, request: api_pb2.ListContainersRequest, context: Ctx
    ) -> api_pb2.ListContainersResponse:
        return list_containers(self._ctx, request)

    @maps_errors
    def ContainerStatus(
        self, request: api_pb2.ContainerStatusRequest, context: Ctx
    ) -> api_pb2.ContainerStatusResponse:
        return container_status(self._ctx, request)

    @maps_errors
    def UpdateContainerResources(
        self, request: api_pb2.UpdateContainerResourcesRequest, context: Ctx
    ) -> api_pb2.UpdateContainerResourcesResponse:
        update_container_resources(self._ctx, request)
        return api_pb2.UpdateContainerResourcesResponse()

    @maps_errors
    def ReopenContainerLog(
        self, request: api_pb2.ReopenContainerLogRequest, context: Ctx
    ) -> api_pb2.ReopenContainerLogResponse:
        reopen_container_log(self._ctx, request.container_id)
        return api_pb2.ReopenContainerLogResponse()

    @maps_errors
    def ExecSync(self, request: api_pb2.ExecSyncRequest, context: Ctx) -> api_pb2.ExecSyncResponse:
        remaining = context.time_remaining()
        # gRPC Python reports "no deadline" as None or as an enormous number of seconds.
        deadline = None if remaining is None or remaining > 1e7 else time.monotonic() + remaining
        return exec_sync(self._ctx, request, deadline=deadline)

    # The streaming RPCs only check the request and hand out a URL: quick, so not in the
    # lifecycle limit (the work happens on the streaming server's own threads).
    @maps_errors
    def Exec(self, request: api_pb2.ExecRequest, context: Ctx) -> api_pb2.ExecResponse:
        return exec_url(self._ctx, self._streaming(), request)

    @maps_errors
    def Attach(self, request: api_pb2.AttachRequest, context: Ctx) -> api_pb2.AttachResponse:
        return attach_url(self._ctx, self._streaming(), request)

    @maps_errors
    def PortForward(
        self, request: api_pb2.PortForwardRequest, context: Ctx
    ) -> api_pb2.PortForwardResponse:
        return port_forward_url(self._ctx, self._streaming(), request)

    def _streaming(self) -> StreamingServer:
        if self._ctx.streaming is None:
            raise UnavailableError("the streaming server is not running")
        return self._ctx.streaming

    @maps_errors
    def ContainerStats(
        self, request: api_pb2.ContainerStatsRequest, context: Ctx
    ) -> api_pb2.ContainerStatsResponse:
        return container_stats(self._ctx, request)

    @maps_errors
    def ListContainerStats(
        self, request: api_pb2.ListContainerStatsRequest, context: Ctx
    ) -> api_pb2.ListContainerStatsResponse:
        return list_container_stats(self._ctx, request)

    @maps_errors
    def PodSandboxStats(
        self, request: api_pb2.PodSandboxStatsRequest, context: Ctx
    ) -> api_pb2.PodSandboxStatsResponse:
        return pod_sandbox_stats(self._ctx, request)

    @maps_errors
    def ListPodSandboxStats(
        self, request: api_pb2.ListPodSandboxStatsRequest, context: Ctx
    ) -> api_pb2.ListPodSandboxStatsResponse:
        return list_pod_sandbox_stats(self._ctx, request)

    def GetContainerEvents(
        self, request: api_pb2.GetEventsRequest, context: Ctx
    ) -> Iterator[api_pb2.ContainerEventResponse]:
        # Not gated and no lifecycle slot: see shim.container.get_events.
        return get_container_events(self._ctx, context)


class ImageService(_Gated):
    """runtime.v1.ImageService: the image basics, through Docker."""

    @maps_errors
    def ListImages(
        self, request: api_pb2.ListImagesRequest, context: Ctx
    ) -> api_pb2.ListImagesResponse:
        return list_images(self._ctx, request)

    @maps_errors
    def ImageStatus(
        self, request: api_pb2.ImageStatusRequest, context: Ctx
    ) -> api_pb2.ImageStatusResponse:
        return image_status(self._ctx, request)

    @maps_errors
    def PullImage(
        self, request: api_pb2.PullImageRequest, context: Ctx
    ) -> api_pb2.PullImageResponse:
        return pull_image(self._ctx, request)

    @maps_errors
    def RemoveImage(
        self, request: api_pb2.RemoveImageRequest, context: Ctx
    ) -> api_pb2.RemoveImageResponse:
        remove_image(self._ctx, request)
        return api_pb2.RemoveImageResponse()

    @maps_errors
    def ImageFsInfo(
        self, request: api_pb2.ImageFsInfoRequest, context: Ctx
    ) -> api_pb2.ImageFsInfoResponse:
        return image_fs_info(self._ctx)
