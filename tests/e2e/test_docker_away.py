"""A Docker engine that does not answer at start-up: cri-shim still starts and serves, says so
in Status, refuses the other calls with UNAVAILABLE naming the cause, and becomes ready once
Docker answers, without a restart. (Errors of a Docker that goes away later are mapped by
the servicer's decorator: tests/unit/test_grpc_errors.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import time

import grpc
import pytest

from cri_api import api_pb2, api_pb2_grpc
from shim.config import ShimConfig
from shim.process import start_shim, stop_process
from tests.e2e.harness import REFERENCE_PLUGINS, details, new_workdir

pytestmark = pytest.mark.integration

DOCKER_SOCKET = "/var/run/docker.sock"


def _runtime_condition(stub: api_pb2_grpc.RuntimeServiceStub) -> api_pb2.RuntimeCondition:
    status = stub.Status(api_pb2.StatusRequest(), timeout=10).status
    (runtime,) = [c for c in status.conditions if c.type == "RuntimeReady"]
    return runtime


def test_shim_serves_while_docker_is_away_and_recovers() -> None:
    workdir = new_workdir()
    docker_link = os.path.join(workdir, "docker.sock")  # nothing there yet
    config = ShimConfig(
        endpoint=f"unix://{workdir}/cri.sock",
        docker_endpoint=f"unix://{docker_link}",
        root_directory=os.path.join(workdir, "root"),
        cni_conf_dir=os.path.join(workdir, "net.d"),
        cni_cache_dir=os.path.join(workdir, "cache"),
        cni_bin_dirs=(REFERENCE_PLUGINS,),
        cni_warm_plugins=False,
    )
    os.makedirs(config.cni_conf_dir)
    proc = start_shim(config, os.path.join(workdir, "shim.log"), timeout=30)
    try:
        with grpc.insecure_channel(config.endpoint) as channel:
            stub = api_pb2_grpc.RuntimeServiceStub(channel)
            runtime = _runtime_condition(stub)
            assert not runtime.status
            assert runtime.reason == "DockerDaemonNotReady"
            assert docker_link in runtime.message
            with pytest.raises(grpc.RpcError) as caught:
                stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=3)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "rebuilding its state" in details(caught.value)

            os.symlink(DOCKER_SOCKET, docker_link)  # Docker "comes back"
            deadline = time.monotonic() + 30
            while not _runtime_condition(stub).status and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _runtime_condition(stub).status
            assert stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items == []

        assert proc.poll() is None
    finally:
        stop_process(proc, sig=signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
