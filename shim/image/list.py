"""ListImages: every image the engine holds, or the one the filter names."""

from __future__ import annotations

from cri_api import api_pb2
from shim.context import ShimContext
from shim.image.convert import to_cri


def list_images(ctx: ShimContext, request: api_pb2.ListImagesRequest) -> api_pb2.ListImagesResponse:
    wanted = request.filter.image.image if request.HasField("filter") else ""
    if wanted:
        info = ctx.infra.image_info(wanted)
        images = [info] if info is not None else []
    else:
        images = ctx.infra.list_images()
    return api_pb2.ListImagesResponse(images=[to_cri(i) for i in images])
