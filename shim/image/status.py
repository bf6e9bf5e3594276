"""ImageStatus: one image by any reference (tag, digest or id); absent is not an error."""

from __future__ import annotations

import json

from cri_api import api_pb2
from shim.context import ShimContext
from shim.image.convert import image_ref, to_cri


def image_status(
    ctx: ShimContext, request: api_pb2.ImageStatusRequest
) -> api_pb2.ImageStatusResponse:
    info = ctx.infra.image_info(image_ref(request.image))
    # CRI: an absent image is not an error; the response simply has no image.
    if info is None:
        return api_pb2.ImageStatusResponse()
    response = api_pb2.ImageStatusResponse(image=to_cri(info))
    if request.verbose:
        response.info["info"] = json.dumps({"id": info.id, "user": info.user, "size": info.size})
    return response
