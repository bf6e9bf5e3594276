"""The shim under test: a real `python -m shim.main` process on a private socket, root, conf
dir and cache dir, driven through the generated gRPC stubs exactly as kubelet drives it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import uuid
from typing import Any, Protocol

import grpc

from cri_api import api_pb2, api_pb2_grpc
from shim.config import ShimConfig
from shim.process import start_shim, stop_process

log = logging.getLogger(__name__)

RPC_TIMEOUT_S = 120.0


class ShimProcess:
    def __init__(self, workdir: str, bin_dirs: list[str], log_level: str = "info") -> None:
        self.socket = os.path.join(workdir, "cri.sock")
        self.root = os.path.join(workdir, "root")
        self.conf_dir = os.path.join(workdir, "net.d")
        self.cache_dir = os.path.join(workdir, "cache")
        self.log_path = os.path.join(workdir, "shim.log")
        self.bin_dirs = bin_dirs
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        os.makedirs(self.conf_dir, exist_ok=True)

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def write_conflist(self, conflist: dict[str, Any]) -> None:
        with open(os.path.join(self.conf_dir, "10-bench.conflist"), "w") as f:
            json.dump(conflist, f, indent=1)

    def start(self) -> None:
        config = ShimConfig(
            endpoint=self.endpoint,
            root_directory=self.root,
            cni_conf_dir=self.conf_dir,
            cni_cache_dir=self.cache_dir,
            cni_bin_dirs=tuple(self.bin_dirs),
            cni_plugin_timeout=60,
            log_level=self.log_level,
        )
        self.proc = start_shim(config, self.log_path, timeout=60)

    def terminate(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is not None:
            stop_process(self.proc, timeout=30)
        self.proc = None

    def runtime(self) -> api_pb2_grpc.RuntimeServiceStub:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.endpoint)
        return api_pb2_grpc.RuntimeServiceStub(self._channel)


class StubSource(Protocol):
    def runtime(self) -> api_pb2_grpc.RuntimeServiceStub: ...


class ShimPods:
    """The three verbs through gRPC; remembers every id it got, for cleanup."""

    label = "shim"

    def __init__(self, shim: StubSource, pod_namespace: str) -> None:
        self._pod_namespace = pod_namespace
        self._stub = shim.runtime()
        self._guard = threading.Lock()
        self.ids: set[str] = set()

    def run(self, name: str) -> str:
        config = api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(
                name=name, namespace=self._pod_namespace, uid=uuid.uuid4().hex, attempt=0
            ),
            hostname=name,
            log_directory=f"/var/log/pods/{self._pod_namespace}_{name}",
        )
        response = self._stub.RunPodSandbox(
            api_pb2.RunPodSandboxRequest(config=config), timeout=RPC_TIMEOUT_S
        )
        sandbox_id = str(response.pod_sandbox_id)
        with self._guard:
            self.ids.add(sandbox_id)
        return sandbox_id

    def stop(self, sandbox_id: str) -> None:
        self._stub.StopPodSandbox(
            api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=RPC_TIMEOUT_S
        )

    def remove(self, sandbox_id: str) -> None:
        self._stub.RemovePodSandbox(
            api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=RPC_TIMEOUT_S
        )

    def pod_ip(self, sandbox_id: str) -> str:
        status = self._stub.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id), timeout=RPC_TIMEOUT_S
        )
        return str(status.status.network.ip)

    def remove_all(self) -> None:
        """Cleanup through the shim itself: every sandbox it still lists."""
        listed = self._stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=RPC_TIMEOUT_S)
        for pod in listed.items:
            with self._guard:
                self.ids.add(str(pod.id))
            self.remove(str(pod.id))
