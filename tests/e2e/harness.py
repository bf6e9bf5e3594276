"""Drive a real cri-shim process: start it on a private socket, root, conf dir and cache dir,
talk to it with the generated stubs, crictl and grpcurl, and look at what the host holds."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from cri_api import api_pb2, api_pb2_grpc
from netplugins.iptables import chain_name
from shim.config import ShimConfig
from shim.process import start_shim, stop_process

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE_PLUGINS = "/usr/lib/cni"
# Every pod these tests make lives in this Kubernetes namespace: it names their containers.
POD_NAMESPACE = "crishim-e2e"


def tool(name: str) -> str | None:
    """A client binary: the repo's .tools (crictl), the venv (grpcurl), then PATH."""
    for d in (os.path.join(REPO, ".tools", "bin"), os.path.dirname(sys.executable)):
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


@dataclass
class NetworkPlan:
    """A private bridge network for one test: its own bridge, subnet and host-local dir."""

    bridge: str
    subnet: str
    data_dir: str
    name: str = "crishim-e2e"
    extra_plugins: list[dict[str, Any]] = field(default_factory=list)
    bridge_extra: dict[str, Any] = field(default_factory=dict)
    ipam_extra: dict[str, Any] = field(default_factory=dict)
    cni_version: str = "1.0.0"

    def conflist(self) -> dict[str, Any]:
        ipam: dict[str, Any] = {
            "type": "host-local",
            "ranges": [[{"subnet": self.subnet}]],
            "dataDir": self.data_dir,
        }
        ipam.update(self.ipam_extra)
        bridge: dict[str, Any] = {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            "ipam": ipam,
        }
        bridge.update(self.bridge_extra)
        return {
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": [
                bridge,
                {"type": "portmap", "capabilities": {"portMappings": True}},
                *self.extra_plugins,
            ],
        }


class Shim:
    def __init__(
        self,
        workdir: str,
        bin_dirs: list[str],
        plugin_timeout: float = 20.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.socket = os.path.join(workdir, "cri.sock")
        self.root = os.path.join(workdir, "root")
        self.conf_dir = os.path.join(workdir, "net.d")
        self.cache_dir = os.path.join(workdir, "cache")
        self.bin_dirs = bin_dirs
        self.plugin_timeout = plugin_timeout
        self.extra_args = extra_args or []
        self.log_path = os.path.join(workdir, "shim.log")
        os.makedirs(self.conf_dir, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def write_conf(self, filename: str, conf: dict[str, Any] | str) -> str:
        path = os.path.join(self.conf_dir, filename)
        with open(path, "w") as f:
            f.write(conf if isinstance(conf, str) else json.dumps(conf, indent=1))
        return path

    def config(self) -> ShimConfig:
        """The flags this shim runs with: its private socket, root and CNI dirs."""
        return ShimConfig(
            endpoint=self.endpoint,
            root_directory=self.root,
            cni_conf_dir=self.conf_dir,
            cni_cache_dir=self.cache_dir,
            cni_bin_dirs=tuple(self.bin_dirs),
            cni_plugin_timeout=self.plugin_timeout,
            log_level="debug",
        )

    def start(self) -> None:
        self.proc = start_shim(self.config(), self.log_path, self.extra_args, timeout=30)
        self.wait_started()

    def wait_started(self, timeout: float = 60) -> None:
        """Until start-up recovery and CNI garbage collection (run in the background once the
        socket serves) are over, as Status's verbose info reports."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.runtime().Status(api_pb2.StatusRequest(verbose=True), timeout=10).info
            startup = json.loads(info.get("startup", "{}"))
            if startup.get("cniGarbageCollected"):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cri-shim did not finish start-up: {startup}\n{self.log()}")
            time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self._close_channel()
        if self.proc is not None:
            stop_process(self.proc, timeout=30, sig=sig)
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-20000:]
        except FileNotFoundError:
            return ""

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.endpoint)
        return self._channel

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def runtime(self) -> api_pb2_grpc.RuntimeServiceStub:
        return api_pb2_grpc.RuntimeServiceStub(self.channel())

    def images(self) -> api_pb2_grpc.ImageServiceStub:
        return api_pb2_grpc.ImageServiceStub(self.channel())

    # -- convenience ----------------------------------------------------------------------

    def run_pod(self, config: api_pb2.PodSandboxConfig, timeout: float = 60) -> str:
        response = self.runtime().RunPodSandbox(
            api_pb2.RunPodSandboxRequest(config=config), timeout=timeout
        )
        return str(response.pod_sandbox_id)

    def status(self, sandbox_id: str, verbose: bool = False) -> api_pb2.PodSandboxStatusResponse:
        return self.runtime().PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose), timeout=30
        )

    def stop_pod(self, sandbox_id: str) -> None:
        self.runtime().StopPodSandbox(
            api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=60
        )

    def remove_pod(self, sandbox_id: str) -> None:
        self.runtime().RemovePodSandbox(
            api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=60
        )

    def list_pods(self) -> list[api_pb2.PodSandbox]:
        return list(
            self.runtime().ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items
        )

    def remove_all(self) -> None:
        for pod in self.list_pods():
            self.remove_pod(pod.id)
        for container in self.list_containers():
            self.remove_container(container.id)

    # -- containers -----------------------------------------------------------------------

    def create_container(
        self,
        sandbox_id: str,
        config: api_pb2.ContainerConfig,
        sandbox_config: api_pb2.PodSandboxConfig,
    ) -> str:
        response = self.runtime().CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config
            ),
            timeout=60,
        )
        return str(response.container_id)

    def start_container(self, container_id: str) -> None:
        self.runtime().StartContainer(
            api_pb2.StartContainerRequest(container_id=container_id), timeout=60
        )

    def container_status(
        self, container_id: str, verbose: bool = False
    ) -> api_pb2.ContainerStatusResponse:
        return self.runtime().ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=container_id, verbose=verbose),
            timeout=30,
        )

    def list_containers(self, **filter_fields: Any) -> list[api_pb2.Container]:
        request = api_pb2.ListContainersRequest()
        if filter_fields:
            request.filter.CopyFrom(api_pb2.ContainerFilter(**filter_fields))
        return list(self.runtime().ListContainers(request, timeout=30).containers)

    def stop_container(self, container_id: str, timeout: int = 10) -> None:
        self.runtime().StopContainer(
            api_pb2.StopContainerRequest(container_id=container_id, timeout=timeout),
            timeout=timeout + 60,
        )

    def remove_container(self, container_id: str) -> None:
        self.runtime().RemoveContainer(
            api_pb2.RemoveContainerRequest(container_id=container_id), timeout=60
        )

    def wait_container_state(
        self, container_id: str, state: int, timeout: float = 30
    ) -> api_pb2.ContainerStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = self.container_status(container_id).status
            if status.state == state or time.monotonic() > deadline:
                return status
            time.sleep(0.1)

    def crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        crictl = tool("crictl")
        assert crictl, "crictl is not installed"
        cmd = [
            crictl,
            "--runtime-endpoint",
            self.endpoint,
            "--image-endpoint",
            self.endpoint,
            "--timeout",
            "30s",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def grpcurl(
        self, *args: str, data: dict[str, Any] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        grpcurl = tool("grpcurl")
        assert grpcurl, "grpcurl is not installed"
        # Go's flag parsing stops at the first positional argument (the socket): flags first.
        flags = ["-d", json.dumps(data)] if data is not None else []
        cmd = [grpcurl, "-plaintext", "-emit-defaults", "-unix", *flags, self.socket, *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)


def pod_config(name: str | None = None, **kwargs: Any) -> api_pb2.PodSandboxConfig:
    name = name or f"pod-{uuid.uuid4().hex[:8]}"
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(
            name=name, namespace=POD_NAMESPACE, uid=uuid.uuid4().hex, attempt=0
        ),
        hostname=name,
        **{"log_directory": "/tmp", **kwargs},
    )
    return config


TEST_IMAGE = "cri-shim.test/busybox:latest"  # scripts/test-image.sh builds it


def container_config(
    name: str, command: list[str], log_path: str = "", **kwargs: Any
) -> api_pb2.ContainerConfig:
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=name),
        image=api_pb2.ImageSpec(image=TEST_IMAGE),
        command=command,
        log_path=log_path,
        **kwargs,
    )


def infra_pid(sandbox_id: str) -> int:
    out = subprocess.run(
        ["/usr/bin/docker", "inspect", "-f", "{{.State.Pid}}", sandbox_id],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def netns_addresses(pid: int, ifname: str = "eth0") -> list[str]:
    out = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "addr", "show", "dev", ifname],
        capture_output=True,
        text=True,
        check=True,
    )
    return [
        a["local"]
        for link in json.loads(out.stdout)
        for a in link["addr_info"]
        if a.get("scope") == "global"
    ]


def netns_link_up(pid: int, ifname: str) -> bool:
    out = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "link", "show", "dev", ifname],
        capture_output=True,
        text=True,
        check=True,
    )
    return "UP" in json.loads(out.stdout)[0]["flags"]


AnyShim = TypeVar("AnyShim", bound=Shim)


@dataclass
class HostLeftovers:
    containers: list[str]
    veths: list[str]
    reservations: list[str]
    cache_files: list[str]
    iptables_lines: list[str]
    pinned: list[str]
    chains: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not any(vars(self).values())


def leftovers(shim: Shim, plan: NetworkPlan | None, sandbox_ids: set[str]) -> HostLeftovers:
    """What the host still holds of this test's pods."""
    mine = owned_containers(shim)
    veths: list[str] = []
    reservations: list[str] = []
    if plan is not None:
        veths = veths_on(plan.bridge)
        net_dir = os.path.join(plan.data_dir, plan.name)
        if os.path.isdir(net_dir):
            reservations = [
                f
                for f in os.listdir(net_dir)
                if f != "lock" and not f.startswith("last_reserved_ip")
            ]
    cache: list[str] = []
    results = os.path.join(shim.cache_dir, "results")
    if os.path.isdir(results):
        cache = os.listdir(results)
    rules = []
    for save in ("iptables-save", "ip6tables-save"):
        saved = subprocess.run([save], capture_output=True, text=True, check=False).stdout
        rules += [line for line in saved.splitlines() if any(s in line for s in sandbox_ids)]
    netns_dir = os.path.join(shim.root, "netns")
    pinned = os.listdir(netns_dir) if os.path.isdir(netns_dir) else []
    network = plan.name if plan is not None else ""
    return HostLeftovers(
        mine,
        veths,
        reservations,
        cache,
        rules,
        pinned,
        chains=per_pod_chains(network, sandbox_ids),
        cgroups=container_cgroups(sandbox_ids),
        temp_files=temp_files(shim),
    )


def per_pod_chains(network: str, sandbox_ids: set[str]) -> list[str]:
    """Per-pod chains, found by their hashed names (they carry no id to search for):
    the masquerade chain CNI-<hash> and portmap's CNI-DN-<hash>, in both families."""
    wanted = {chain_name(network, sid, prefix) for sid in sandbox_ids for prefix in ("", "DN-")}
    found = []
    for save in ("iptables-save", "ip6tables-save"):
        saved = subprocess.run([save], capture_output=True, text=True, check=False).stdout
        found += [f"{save}: {c}" for c in wanted if f":{c} " in saved]
    return found


def container_cgroups(ids: set[str]) -> list[str]:
    """cgroup directories still named after one of the containers (any controller, any
    parent: Docker's cgroupfs driver names them by id, systemd's as docker-<id>.scope)."""
    found = []
    root = "/sys/fs/cgroup"
    for dirpath, dirnames, _files in os.walk(root):
        if dirpath.count("/") > root.count("/") + 4:
            dirnames[:] = []
            continue
        for name in dirnames:
            if any(cid in name for cid in ids):
                found.append(os.path.join(dirpath, name))
    return found


def temp_files(shim: Shim) -> list[str]:
    """`.tmp-*` files that an interrupted atomic write would leave."""
    found = []
    for directory in (
        os.path.join(shim.root, "sandboxes"),
        os.path.join(shim.cache_dir, "results"),
    ):
        if os.path.isdir(directory):
            found += [
                os.path.join(directory, f) for f in os.listdir(directory) if f.startswith(".tmp-")
            ]
    return found


def owned_containers(shim: Shim) -> list[str]:
    """Every Docker container (infra or application, any state) this test's shim created: the
    shim labels each with its root directory."""
    ps = subprocess.run(
        [
            "/usr/bin/docker",
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            f"label=io.cri-shim.root={os.path.abspath(shim.root)}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return ps.stdout.split()


def veths_on(bridge: str) -> list[str]:
    """The host's veth ends attached to `bridge`."""
    out = subprocess.run(
        ["ip", "-j", "link", "show", "type", "veth"], capture_output=True, text=True, check=True
    ).stdout
    return [link["ifname"] for link in json.loads(out) if link.get("master") == bridge]


def force_cleanup(shim: Shim, plan: NetworkPlan | None, sandbox_ids: set[str]) -> None:
    """Last resort after a failed test: remove by hand whatever the shim could not."""
    for cid in set(owned_containers(shim)) | sandbox_ids:
        subprocess.run(["/usr/bin/docker", "rm", "-f", cid], capture_output=True, check=False)
    netns_dir = os.path.join(shim.root, "netns")
    if os.path.isdir(netns_dir):
        for entry in os.listdir(netns_dir):
            subprocess.run(
                ["umount", "-l", os.path.join(netns_dir, entry)], capture_output=True, check=False
            )
    if plan is not None:
        subprocess.run(["ip", "link", "del", plan.bridge], capture_output=True, check=False)
    _delete_rules_naming(sandbox_ids)


def serve_shim(
    shim: AnyShim,
    plan: NetworkPlan,
    sandbox_ids: set[str],
    stop_signal: int = signal.SIGKILL,
    require_clean: bool = False,
) -> Iterator[AnyShim]:
    """Start `shim` on `plan`'s network and yield it; afterwards, even when the test failed,
    remove its pods through a running shim (every id found lands in `sandbox_ids`), stop it
    with `stop_signal`, clean by hand what is left and delete its workdir. Leftovers are
    printed, or fail the test with `require_clean`."""
    shim.write_conf("10-e2e.conflist", plan.conflist())
    try:
        shim.start()
        yield shim
    finally:
        try:
            if not shim.running():
                shim.start()
            sandbox_ids.update(pod.id for pod in shim.list_pods())
            shim.remove_all()
        except Exception as err:  # keep cleaning by hand below
            print(f"cleanup through the shim failed: {err}\n{shim.log()}")
        finally:
            shim.kill(stop_signal)
            force_cleanup(shim, plan, sandbox_ids)
            left = leftovers(shim, plan, sandbox_ids)
            shutil.rmtree(shim.workdir, ignore_errors=True)
            if require_clean:
                assert left.empty(), f"leftovers: {left}"
            elif not left.empty():
                print(f"force-cleaned leftovers: {left}")


def _delete_rules_naming(sandbox_ids: set[str]) -> None:
    """Delete the nat rules whose comment names one of our sandboxes, then the per-container
    chains (CNI-<hash>, CNI-DN-<hash>) they jumped to, once empty."""
    saved = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=False
    ).stdout
    chains: set[str] = set()
    for line in saved.splitlines():
        if line.startswith("-A ") and any(s in line for s in sandbox_ids):
            # The comments hold quoted ids: split as a shell would (iptables-save quotes so).
            args = shlex.split(line[3:])
            if "-j" in args:
                chains.add(args[args.index("-j") + 1])
            subprocess.run(["iptables", "-t", "nat", "-D", *args], capture_output=True, check=False)
    shared = {"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"}
    for chain in chains - shared:
        if chain.startswith("CNI-"):
            for flag in ("-F", "-X"):
                subprocess.run(
                    ["iptables", "-t", "nat", flag, chain], capture_output=True, check=False
                )


def new_workdir() -> str:
    # Short: a unix socket path must fit in 108 bytes.
    return tempfile.mkdtemp(prefix="crishim-")


def details(err: BaseException) -> str:
    """The status message of a failed RPC."""
    assert isinstance(err, grpc.RpcError)
    return str(err.details() or "")


@contextmanager
def script_plugins(plugins: dict[str, str]) -> Iterator[str]:
    """A private bin dir holding test plugins written as shell scripts (name -> body)."""
    directory = new_workdir()
    try:
        for name, body in plugins.items():
            path = os.path.join(directory, name)
            with open(path, "w") as f:
                f.write(body)
            os.chmod(path, stat.S_IRWXU)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
