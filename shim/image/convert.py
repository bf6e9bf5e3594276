"""Pure conversions between Docker's image facts and the CRI's Image message."""

from __future__ import annotations

from cri_api import api_pb2
from shim.engine.protocol import ImageInfo
from shim.errors import InvalidArgumentError


def image_ref(spec: api_pb2.ImageSpec) -> str:
    if not spec.image:
        raise InvalidArgumentError("image spec has no image reference")
    return spec.image


def split_user(user: str) -> tuple[int | None, str]:
    """The uid or the user name of an image's `USER` (`1002`, `www-data`, `1003:1004`,
    `www-data:1004`): the group part never decides who the process runs as."""
    name = user.split(":", 1)[0]
    if not name:
        return None, ""
    if name.isdigit():
        return int(name), ""
    return None, name


def to_cri(info: ImageInfo) -> api_pb2.Image:
    image = api_pb2.Image(
        id=info.id,
        repo_tags=info.repo_tags,
        repo_digests=info.repo_digests,
        size=info.size,
    )
    uid, username = split_user(info.user)
    if uid is not None:
        image.uid.value = uid
    image.username = username
    return image
