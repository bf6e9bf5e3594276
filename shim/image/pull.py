"""PullImage. Its image_ref is the image id (`sha256:<config digest>`), the same value that
Image.id, ContainerStatus.image_id and Container.image_id carry: critest's Image Identifier
Consistency specs compare them, and a repo digest would not match."""

from __future__ import annotations

from cri_api import api_pb2
from shim.context import ShimContext
from shim.image.convert import image_ref


def pull_image(ctx: ShimContext, request: api_pb2.PullImageRequest) -> api_pb2.PullImageResponse:
    image_id = ctx.infra.pull_image(image_ref(request.image))
    return api_pb2.PullImageResponse(image_ref=image_id)
