"""One cri-shim per root directory and socket (issue 10, item 3): a second one refuses to
start, with a clear message and a non-zero exit, and leaves the first one's socket and pods
alone; a killed shim's lock and socket do not stop its successor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from cri_api import api_pb2
from shim.config import ShimConfig
from tests.e2e.conftest import Pods
from tests.e2e.harness import Shim, pod_config

pytestmark = pytest.mark.integration


def _second(shim: Shim, root: str) -> subprocess.CompletedProcess[str]:
    config = ShimConfig(
        endpoint=shim.endpoint,
        root_directory=root,
        cni_conf_dir=shim.conf_dir,
        cni_cache_dir=shim.cache_dir,
        cni_bin_dirs=tuple(shim.bin_dirs),
        cni_warm_plugins=False,
    )
    return subprocess.run(
        [sys.executable, "-m", "shim.main", *config.to_args()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_second_instance_is_refused(shim: Shim, pods: Pods) -> None:
    sandbox_id = pods.add(shim.run_pod(pod_config()))
    socket_inode = os.stat(shim.socket).st_ino

    same_root = _second(shim, shim.root)
    assert same_root.returncode == 1
    assert "another cri-shim holds" in same_root.stderr
    assert os.path.join(shim.root, "cri-shim.lock") in same_root.stderr

    other_root = _second(shim, os.path.join(shim.workdir, "other-root"))
    assert other_root.returncode == 1
    assert f"something already serves on {shim.socket}" in other_root.stderr

    # The first shim still owns its socket and its pod still has its address.
    assert os.stat(shim.socket).st_ino == socket_inode
    status = shim.status(sandbox_id).status
    assert status.state == api_pb2.SANDBOX_READY and status.network.ip

    # SIGKILL leaves a socket file and a lock file behind: the successor starts anyway.
    shim.kill(signal.SIGKILL)
    assert os.path.exists(shim.socket)
    shim.start()
    assert shim.status(sandbox_id).status.state == api_pb2.SANDBOX_READY
