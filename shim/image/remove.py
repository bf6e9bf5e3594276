"""RemoveImage: the image the reference resolves to goes, with every tag it has.

Docker refuses to remove an image id that more than one repository references, so the tags
go one by one first, then the id itself. An image that is already gone, or that a concurrent
RemoveImage takes away half way, is a success: the CRI makes RemoveImage idempotent."""

from __future__ import annotations

import logging

from cri_api import api_pb2
from shim.context import ShimContext
from shim.image.convert import image_ref

log = logging.getLogger(__name__)


def remove_image(ctx: ShimContext, request: api_pb2.RemoveImageRequest) -> None:
    ref = image_ref(request.image)
    info = ctx.infra.image_info(ref)
    if info is None:
        log.info("RemoveImage of absent image %s: nothing to do", ref)
        return
    for tag in info.repo_tags:
        ctx.infra.remove_image(tag)
    # The last untag usually removes the image; by id also covers digest-only images.
    ctx.infra.remove_image(info.id)
    log.info("image %s removed (%s)", info.id, ", ".join(info.repo_tags) or "no tags")
