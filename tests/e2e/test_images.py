"""The image basics through crictl: list, inspect, remove, pull (which must fail cleanly here:
no registry is reachable) and the image filesystem."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.harness import Shim, tool

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(tool("crictl") is None, reason="crictl could not be installed"),
]

PAUSE = "registry.k8s.io/pause:3.10"


@pytest.fixture
def scratch_image() -> Iterator[str]:
    """A throwaway tag of the local pause image, so removal can be tested without a registry."""
    tag = f"crishim-e2e/scratch:{uuid.uuid4().hex[:8]}"
    subprocess.run(["/usr/bin/docker", "tag", PAUSE, tag], check=True, capture_output=True)
    yield tag
    subprocess.run(["/usr/bin/docker", "rmi", tag], check=False, capture_output=True)


def test_images_list_inspect_remove(shim: Shim, scratch_image: str) -> None:
    listed = json.loads(shim.crictl("images", "-o", "json").stdout)["images"]
    tags = {t for image in listed for t in image["repoTags"]}
    assert {PAUSE, scratch_image} <= tags

    status = json.loads(shim.crictl("inspecti", scratch_image).stdout)
    docker_id = subprocess.run(
        ["/usr/bin/docker", "image", "inspect", "-f", "{{.Id}}", PAUSE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert status["status"]["id"] == docker_id
    assert scratch_image in status["status"]["repoTags"]

    shim.crictl("rmi", scratch_image)
    gone = subprocess.run(
        ["/usr/bin/docker", "image", "inspect", scratch_image], capture_output=True, check=False
    )
    assert gone.returncode != 0
    missing = shim.crictl("inspecti", scratch_image, check=False)
    assert missing.returncode != 0


def test_pull_failure_is_reported(shim: Shim) -> None:
    result = shim.crictl("pull", "cri-shim.invalid/nothing:1", check=False)
    assert result.returncode != 0
    assert "failed to pull image cri-shim.invalid/nothing:1" in result.stderr


def test_image_fs_info(shim: Shim) -> None:
    info = json.loads(shim.crictl("imagefsinfo", "-o", "json").stdout)
    filesystems = info["status"]["imageFilesystems"]
    assert filesystems[0]["fsId"]["mountpoint"].startswith("/var/lib/docker")
    assert int(filesystems[0]["usedBytes"]["value"]) > 0
