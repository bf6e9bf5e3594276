"""Drive a real kubelet v1.34 (standalone: static pods, no API server) against a cri-shim this
process started: build or reuse the binary, write its KubeletConfiguration, start it on
127.0.0.1 only, read its APIs, and take it and everything it made down again.

Used by tests/kubelet and by `make bench` (bench/bench_kubelet.py)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shim.process import stop_process

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KUBELET_VERSION = "v1.34.4"
KUBELET_BIN = os.path.join(REPO, ".tools", "bin", "kubelet")
BUILD_SCRIPT = os.path.join(REPO, "scripts", "kubelet-tools.sh")
CONTAINER_LOGS_DIR = "/var/log/containers"  # kubelet's legacy symlinks; not configurable
LOOPBACK = "127.0.0.1"

T = TypeVar("T")


def kubelet_binary(build: bool = True) -> str | None:
    """The cached kubelet binary at this version, built by scripts/kubelet-tools.sh (~6 min the
    first time, a version check afterwards) when `build`; None when it cannot be had."""
    if _binary_version(KUBELET_BIN) != KUBELET_VERSION and build:
        subprocess.run(["bash", BUILD_SCRIPT], check=False, timeout=3600)
    return KUBELET_BIN if _binary_version(KUBELET_BIN) == KUBELET_VERSION else None


def _binary_version(path: str) -> str | None:
    if not os.access(path, os.X_OK):
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    # "Kubernetes v1.34.4"
    words = out.stdout.split()
    return words[-1] if out.returncode == 0 and words else None


def port_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll `probe` until it returns something other than None (or False); raise
    TimeoutError naming `what` and the last exception the probe raised."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = probe()
            if value is not None and value is not False:
                return value
        except Exception as err:
            last = err
        if time.monotonic() > deadline:
            cause = f" (last error: {last!r})" if last else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{cause}")
        time.sleep(interval)


@dataclass
class KubeletPorts:
    port: int = 10250  # authenticated API (TLS, self-signed, anonymous allowed)
    read_only: int = 10255
    healthz: int = 10248

    def all(self) -> list[int]:
        return [self.port, self.read_only, self.healthz]


def kubelet_configuration(
    endpoint: str,
    manifests_dir: str,
    pod_logs_dir: str,
    ports: KubeletPorts,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A KubeletConfiguration (v1beta1) for a standalone kubelet on this cgroup v1 host without
    systemd (docs: KUBELET-STANDALONE.md), as a dict: kubelet reads JSON as YAML."""
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": endpoint,
        # Docker's driver without systemd; cri-shim's RuntimeConfig says cgroupfs as well.
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "staticPodPath": manifests_dir,
        "fileCheckFrequency": "1s",
        "syncFrequency": "5s",
        "address": LOOPBACK,
        "port": ports.port,
        "readOnlyPort": ports.read_only,
        "healthzBindAddress": LOOPBACK,
        "healthzPort": ports.healthz,
        # Without an API server: anonymous and AlwaysAllow, or 10250 answers nothing
        # ("no client provided, cannot use webhook authentication", kubernetes#68939).
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        # True (the default) keeps cAdvisor's disk metrics, without which kubelet cannot map
        # ImageFsInfo's mountpoint to a device and its eviction manager never runs (no
        # ListContainerStats). Only an overlay/btrfs/NFS root needs it off (kubernetes#80633).
        "localStorageCapacityIsolation": True,
        "podLogsDir": pod_logs_dir,
        # kubelet's own -999 is refused by this kernel (only logged); 0 keeps the log clean.
        "oomScoreAdj": 0,
        # Never garbage-collect the images the tests rely on (busybox, pause).
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # The shared CI disk must not make kubelet evict test pods.
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "evictionPressureTransitionPeriod": "5s",
        "shutdownGracePeriod": "0s",
        "maxPods": 110,
        "serializeImagePulls": False,
    }
    config.update(overrides or {})
    return config


@dataclass
class Kubelet:
    """One kubelet process with its root dir, manifests dir and pod logs dir under `workdir`."""

    binary: str
    endpoint: str
    workdir: str
    node_name: str = "crishim-node"
    ports: KubeletPorts = field(default_factory=KubeletPorts)
    overrides: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    verbosity: int = 2

    def __post_init__(self) -> None:
        self.root_dir = os.path.join(self.workdir, "root")
        self.manifests_dir = os.path.join(self.workdir, "manifests")
        self.pod_logs_dir = os.path.join(self.workdir, "pod-logs")
        self.config_path = os.path.join(self.workdir, "kubelet-config.json")
        self.log_path = os.path.join(self.workdir, "kubelet.log")
        for d in (self.root_dir, self.manifests_dir, self.pod_logs_dir):
            os.makedirs(d, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self._tls = ssl.create_default_context()
        # kubelet's serving certificate is self-signed, made at start-up in <root>/pki.
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE

    # -- process --------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config={self.config_path}",
            f"--root-dir={self.root_dir}",
            f"--cert-dir={os.path.join(self.root_dir, 'pki')}",
            f"--hostname-override={self.node_name}",
            f"--v={self.verbosity}",
            *self.flags,
        ]

    def start(self, timeout: float = 120) -> None:
        busy = [p for p in self.ports.all() if not port_free(p)]
        if busy:
            raise RuntimeError(f"kubelet's ports {busy} on {LOOPBACK} are in use")
        config = kubelet_configuration(
            self.endpoint, self.manifests_dir, self.pod_logs_dir, self.ports, self.overrides
        )
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=1)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"kubelet exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
                )
            json.loads(self.read_only_get("/pods"))
            self.get("/healthz")
            return True

        try:
            wait_for("kubelet's read-only and authenticated APIs", ready, timeout)
        except TimeoutError as err:
            raise TimeoutError(f"{err}\n{self.log()[-4000:]}") from None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10) -> None:
        """SIGTERM, then SIGKILL: kubelet leaves its pods running (a restart adopts them)."""
        if self.proc is None:
            return
        stop_process(self.proc, timeout=grace)
        self.proc = None

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # -- APIs -----------------------------------------------------------------------------

    def read_only_get(self, path: str, timeout: float = 10) -> bytes:
        url = f"http://{LOOPBACK}:{self.ports.read_only}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body

    def get(self, path: str, timeout: float = 30) -> bytes:
        """GET on the authenticated API (10250): /containerLogs, /metrics, /stats/summary."""
        url = f"https://{LOOPBACK}:{self.ports.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout, context=self._tls) as response:
            body: bytes = response.read()
            return body

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.read_only_get("/pods")).get("items") or []
        return items

    def pod(self, name: str) -> dict[str, Any] | None:
        """kubelet's view of the static pod made from manifest `name` (named <name>-<node>)."""
        full = self.pod_name(name)
        for pod in self.pods():
            if pod["metadata"]["name"] == full:
                return pod
        return None

    def pod_name(self, name: str) -> str:
        return f"{name}-{self.node_name}"

    def container_logs(self, namespace: str, name: str, container: str, query: str = "") -> str:
        path = f"/containerLogs/{namespace}/{self.pod_name(name)}/{container}"
        return self.get(path + (f"?{query}" if query else "")).decode(errors="replace")

    def metrics(self) -> str:
        return self.get("/metrics").decode()

    # -- manifests ------------------------------------------------------------------------

    def manifest_path(self, name: str) -> str:
        return os.path.join(self.manifests_dir, f"{name}.json")

    def add_manifest(self, pod: dict[str, Any]) -> str:
        """Write a static pod manifest atomically: kubelet's file source skips dot files, so
        it never reads a half-written one."""
        name = pod["metadata"]["name"]
        final = self.manifest_path(name)
        partial = os.path.join(self.manifests_dir, f".{name}.json.tmp")
        with open(partial, "w") as f:
            json.dump(pod, f, indent=1)
        os.rename(partial, final)
        return final

    def remove_manifest(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.manifest_path(name))

    def remove_all_manifests(self) -> None:
        for entry in os.listdir(self.manifests_dir):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.manifests_dir, entry))

    # -- clean-up -------------------------------------------------------------------------

    def cleanup_host(self) -> None:
        """After stop(): whatever kubelet left on the host. Mounts under the work dir first
        (deepest first: a rmtree through a live bind mount would delete what it shows), then
        the legacy log links named for this node, then the work dir."""
        for mount in reversed(mounts_under(self.workdir)):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        for link in self.container_log_links():
            with contextlib.suppress(OSError):
                os.unlink(link)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def container_log_links(self) -> list[str]:
        """/var/log/containers/<pod>_<namespace>_<container>-<id>.log of this node's pods."""
        marker = f"-{self.node_name}_"
        try:
            entries = os.listdir(CONTAINER_LOGS_DIR)
        except FileNotFoundError:
            return []
        return [os.path.join(CONTAINER_LOGS_DIR, e) for e in entries if marker in e]


# ---- kubelet's iptables chains ---------------------------------------------------------------

# kubelet (1.28+) makes KUBE-IPTABLES-HINT and KUBE-KUBELET-CANARY (to notice a flush) and
# KUBE-FIREWALL, jumped to from INPUT and OUTPUT, which drops packets for 127.0.0.0/8 that come
# from elsewhere. None names a pod; kubelet never removes them. A test or benchmark takes away
# the ones that were not there before its kubelet started.
IptablesChain = tuple[str, str, str]  # (command, table, chain)
_SAVE = {"iptables": "iptables-save", "ip6tables": "ip6tables-save"}


def kubelet_chains() -> set[IptablesChain]:
    found = set()
    for command, save in _SAVE.items():
        for table in ("filter", "nat", "mangle"):
            out = subprocess.run(
                [save, "-t", table], capture_output=True, text=True, check=False
            ).stdout
            for line in out.splitlines():
                if line.startswith(":KUBE-"):
                    found.add((command, table, line[1:].split()[0]))
    return found


def delete_chains(chains: set[IptablesChain]) -> None:
    """Delete every rule that jumps to one of `chains`, then the chains themselves."""
    for command, save in _SAVE.items():
        for table in ("filter", "nat", "mangle"):
            names = {c for cmd, t, c in chains if cmd == command and t == table}
            if not names:
                continue
            out = subprocess.run(
                [save, "-t", table], capture_output=True, text=True, check=False
            ).stdout
            for line in out.splitlines():
                if not line.startswith("-A "):
                    continue
                args = shlex.split(line[3:])
                if "-j" in args and args[args.index("-j") + 1] in names:
                    subprocess.run(
                        [command, "-t", table, "-D", *args], capture_output=True, check=False
                    )
            for name in names:
                for flag in ("-F", "-X"):
                    subprocess.run(
                        [command, "-t", table, flag, name], capture_output=True, check=False
                    )


def mounts_under(directory: str) -> list[str]:
    """Mount points at or below `directory`, in /proc/self/mountinfo order."""
    prefix = os.path.realpath(directory)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def new_kubelet_workdir() -> str:
    return tempfile.mkdtemp(prefix="crishim-kubelet-")


# ---- kubelet's view of a pod -----------------------------------------------------------------


def phase(pod: dict[str, Any] | None) -> str | None:
    return None if pod is None else pod.get("status", {}).get("phase")


def pod_ip(pod: dict[str, Any] | None) -> str | None:
    return None if pod is None else pod.get("status", {}).get("podIP")


def condition(pod: dict[str, Any] | None, kind: str) -> bool:
    if pod is None:
        return False
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == kind:
            return bool(c.get("status") == "True")
    return False


def container_status(
    pod: dict[str, Any] | None, container: str, init: bool = False
) -> dict[str, Any] | None:
    if pod is None:
        return None
    key = "initContainerStatuses" if init else "containerStatuses"
    for status in pod.get("status", {}).get(key) or []:
        if status.get("name") == container:
            result: dict[str, Any] = status
            return result
    return None


def restart_count(pod: dict[str, Any] | None, container: str) -> int:
    status = container_status(pod, container)
    return int(status.get("restartCount", 0)) if status else 0


def container_running(pod: dict[str, Any] | None, container: str) -> bool:
    status = container_status(pod, container)
    return bool(status and "running" in (status.get("state") or {}))


def wait_restarted(
    kubelet: Kubelet, pod: str, container: str, times: int, timeout: float
) -> dict[str, Any]:
    """Wait until kubelet restarted `container` of static pod `pod` at least `times` times;
    return how its previous instance ended (lastState.terminated: exitCode, reason...)."""

    def restarted() -> dict[str, Any] | None:
        status = container_status(kubelet.pod(pod), container)
        if not status or int(status.get("restartCount", 0)) < times:
            return None
        terminated: dict[str, Any] = (status.get("lastState") or {}).get("terminated") or {}
        return terminated

    return wait_for(f"{times} restarts of {pod}/{container}", restarted, timeout)


def container_id(pod: dict[str, Any] | None, container: str) -> str | None:
    """The runtime's id of the container's current instance, without the `<runtime>://`."""
    status = container_status(pod, container)
    raw = (status or {}).get("containerID") or ""
    return raw.split("://", 1)[-1] or None


# ---- kubelet's log ------------------------------------------------------------------------

# klog: "E0102 15:04:05.000000    1234 file.go:12] "message" key="value" err="rpc error: ..."
_RPC_ERROR = re.compile(r"rpc error: code = (\w+) desc = (.*)")
_UNIMPLEMENTED_RPC = re.compile(r"runtime\.v1\.(\w+Service)/(\w+) is not implemented")


def rpc_error_lines(log: str) -> list[str]:
    """Every line of kubelet's log that reports a failed CRI call."""
    return [line for line in log.splitlines() if _RPC_ERROR.search(line)]


def unimplemented_rpcs(log: str) -> set[str]:
    """The CRI RPCs kubelet called and cri-shim answered UNIMPLEMENTED (cri-shim's message
    names them)."""
    return {f"{m.group(1)}/{m.group(2)}" for m in _UNIMPLEMENTED_RPC.finditer(log)}


def lines_mentioning(log: str, needles: Iterable[str]) -> list[str]:
    needles = list(needles)
    return [line for line in log.splitlines() if any(n in line for n in needles)]


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body.decode(errors="replace")


def http_answers(url: str, timeout: float = 5) -> str | None:
    try:
        return http_get(url, timeout)
    except (urllib.error.URLError, OSError):
        return None
