"""The image basics of the CRI ImageService, through Docker."""

from __future__ import annotations

import json
import os
import time

from cri_api import api_pb2
from shim.context import ShimContext
from shim.errors import InvalidArgumentError, NotFoundError
from shim.infra_runtime import ImageInfo


def list_images(ctx: ShimContext, request: api_pb2.ListImagesRequest) -> api_pb2.ListImagesResponse:
    wanted = request.filter.image.image if request.HasField("filter") else ""
    if wanted:
        info = ctx.infra.image_info(wanted)
        images = [info] if info is not None else []
    else:
        images = ctx.infra.list_images()
    return api_pb2.ListImagesResponse(images=[_to_cri(i) for i in images])


def image_status(
    ctx: ShimContext, request: api_pb2.ImageStatusRequest
) -> api_pb2.ImageStatusResponse:
    ref = _ref(request.image)
    info = ctx.infra.image_info(ref)
    # CRI: an absent image is not an error; the response simply has no image.
    if info is None:
        return api_pb2.ImageStatusResponse()
    response = api_pb2.ImageStatusResponse(image=_to_cri(info))
    if request.verbose:
        response.info["info"] = json.dumps({"id": info.id, "user": info.user, "size": info.size})
    return response


def pull_image(ctx: ShimContext, request: api_pb2.PullImageRequest) -> api_pb2.PullImageResponse:
    ref = _ref(request.image)
    image_id = ctx.infra.pull_image(ref)
    return api_pb2.PullImageResponse(image_ref=image_id)


def remove_image(ctx: ShimContext, request: api_pb2.RemoveImageRequest) -> None:
    ctx.infra.remove_image(_ref(request.image))


def image_fs_info(ctx: ShimContext) -> api_pb2.ImageFsInfoResponse:
    root = ctx.infra.images_root()
    mountpoint = os.path.join(root, "image")
    if not os.path.isdir(mountpoint):
        mountpoint = root
    used = sum(i.size for i in ctx.infra.list_images())
    inodes = _inodes_used(root)
    usage = api_pb2.FilesystemUsage(
        timestamp=time.time_ns(),
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=mountpoint),
        used_bytes=api_pb2.UInt64Value(value=used),
        inodes_used=api_pb2.UInt64Value(value=inodes),
    )
    return api_pb2.ImageFsInfoResponse(image_filesystems=[usage])


def _ref(spec: api_pb2.ImageSpec) -> str:
    if not spec.image:
        raise InvalidArgumentError("image spec has no image reference")
    return spec.image


def _inodes_used(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError as err:
        raise NotFoundError(f"image filesystem {path} is not readable: {err}") from err
    return int(st.f_files - st.f_ffree)


def _to_cri(info: ImageInfo) -> api_pb2.Image:
    image = api_pb2.Image(
        id=info.id,
        repo_tags=info.repo_tags,
        repo_digests=info.repo_digests,
        size=info.size,
    )
    if info.user.isdigit():
        image.uid.value = int(info.user)
    elif info.user:
        image.username = info.user.split(":", 1)[0]
    return image
