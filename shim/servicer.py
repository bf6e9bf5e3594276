"""The gRPC servicers: a few lines per RPC, all behaviour lives in the per-verb modules."""

from __future__ import annotations

import grpc

from cri_api import api_pb2
from shim import runtime_info
from shim.context import ShimContext
from shim.grpc_errors import maps_errors
from shim.image.fs_info import image_fs_info
from shim.image.list import list_images
from shim.image.pull import pull_image
from shim.image.remove import remove_image
from shim.image.status import image_status
from shim.sandbox.list import list_pod_sandbox
from shim.sandbox.remove import remove_pod_sandbox
from shim.sandbox.run import run_pod_sandbox
from shim.sandbox.status import pod_sandbox_status
from shim.sandbox.stop import stop_pod_sandbox

Ctx = grpc.ServicerContext


class RuntimeService:
    """runtime.v1.RuntimeService: the RPCs cri-shim offers (the rest answer UNIMPLEMENTED)."""

    def __init__(self, ctx: ShimContext) -> None:
        self._ctx = ctx

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
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id=run_pod_sandbox(self._ctx, request))

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


class ImageService:
    """runtime.v1.ImageService: the image basics, through Docker."""

    def __init__(self, ctx: ShimContext) -> None:
        self._ctx = ctx

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
