"""ImageFsInfo: the filesystem Docker keeps its images on, and how much they use."""

from __future__ import annotations

import os
import time

from cri_api import api_pb2
from shim.context import ShimContext
from shim.errors import NotFoundError


def image_fs_info(ctx: ShimContext) -> api_pb2.ImageFsInfoResponse:
    root = ctx.infra.images_root()
    mountpoint = os.path.join(root, "image")
    if not os.path.isdir(mountpoint):
        mountpoint = root
    used = sum(i.size for i in ctx.infra.list_images())
    usage = api_pb2.FilesystemUsage(
        timestamp=time.time_ns(),
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=mountpoint),
        used_bytes=api_pb2.UInt64Value(value=used),
        inodes_used=api_pb2.UInt64Value(value=_inodes_used(root)),
    )
    return api_pb2.ImageFsInfoResponse(image_filesystems=[usage])


def _inodes_used(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError as err:
        raise NotFoundError(f"image filesystem {path} is not readable: {err}") from err
    return int(st.f_files - st.f_ffree)
