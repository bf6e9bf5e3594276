"""The image basics through crictl: list, inspect, remove, pull (which must fail cleanly here:
no registry is reachable) and the image filesystem."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import uuid
from collections.abc import Iterator

import pytest

from cri_api import api_pb2
from tests.e2e.harness import Shim, tool

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(tool("crictl") is None, reason="crictl could not be installed"),
]

PAUSE = "registry.k8s.io/pause:3.10"


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/bin/docker", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def scratch_image() -> Iterator[tuple[str, str]]:
    """A throwaway image of its own (a unique label gives it its own id) with two tags, so
    removal can be tested without a registry and without touching the pause image."""
    marker = uuid.uuid4().hex[:8]
    tag, alias = f"crishim-e2e/scratch:{marker}", f"crishim-e2e/scratch-alias:{marker}"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:  # CRI clients refuse a 0-byte image
        info = tarfile.TarInfo("marker")
        info.size = len(marker)
        tar.addfile(info, io.BytesIO(marker.encode()))
    subprocess.run(
        ["/usr/bin/docker", "import", "-", tag],
        input=archive.getvalue(),
        check=True,
        capture_output=True,
    )
    _docker("tag", tag, alias)
    yield tag, alias
    _docker("rmi", "-f", tag, alias, check=False)


def test_images_list_inspect_remove(shim: Shim, scratch_image: tuple[str, str]) -> None:
    tag, alias = scratch_image
    listed = json.loads(shim.crictl("images", "-o", "json").stdout)["images"]
    tags = {t for image in listed for t in image["repoTags"]}
    assert {PAUSE, tag, alias} <= tags

    status = json.loads(shim.crictl("inspecti", tag).stdout)
    docker_id = _docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()
    assert status["status"]["id"] == docker_id
    assert {tag, alias} <= set(status["status"]["repoTags"])

    # Removing by one tag removes the image with every tag (Docker alone would refuse the id,
    # "referenced in multiple repositories"); the pause image is untouched.
    shim.crictl("rmi", tag)
    for name in (tag, alias, docker_id):
        assert _docker("image", "inspect", name, check=False).returncode != 0
    assert _docker("image", "inspect", PAUSE, check=False).returncode == 0
    # Removing an absent image is a success (RemoveImage is idempotent; crictl itself would
    # stop at its own ImageStatus check, so this goes to the RPC directly).
    shim.images().RemoveImage(
        api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=docker_id)), timeout=30
    )


def test_pull_failure_is_reported(shim: Shim) -> None:
    result = shim.crictl("pull", "cri-shim.invalid/nothing:1", check=False)
    assert result.returncode != 0
    assert "failed to pull image cri-shim.invalid/nothing:1" in result.stderr


def test_image_fs_info(shim: Shim) -> None:
    info = json.loads(shim.crictl("imagefsinfo", "-o", "json").stdout)
    filesystems = info["status"]["imageFilesystems"]
    assert filesystems[0]["fsId"]["mountpoint"].startswith("/var/lib/docker")
    assert int(filesystems[0]["usedBytes"]["value"]) > 0
