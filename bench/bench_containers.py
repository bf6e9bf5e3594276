"""The container half through a private shim, against Docker itself in the same run:

- create_start: CreateContainer + StartContainer through gRPC, alternating one for one with the
  floor, the same `docker create` + `docker start` done directly with the docker SDK's
  low-level client and the body the shim gives Docker (the sandbox's network and IPC, json-file
  journal with max-size, no restart, no health check);
- relist: kubelet's PLEG relist (ListPodSandbox + ListContainers, and ContainerStatus of one
  container) with `--relist-pods` pods of two sleeping containers each, back to back;
- memory: the shim's VmRSS (and its children's, the warm CNI worker, apart) along the way;
- log_throughput: one container writing numbered lines as fast as it can, until the CRI file
  holds the last one; lines lost, repeated or reordered; Docker's own json-file rate beside it.

Every pod is a hostNetwork sandbox (namespace_options network=NODE): no CNI ADD, so the figures
are the container verbs' own and 110 pods set up in seconds. Everything is labelled with this
run's pod namespace; clean-up removes pods through the shim, then whatever Docker still holds
with that label, then the private directories, and reports what is left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker
import grpc

from bench.bench_shim import RPC_TIMEOUT_S, ShimProcess
from bench.hostnet import POD_NAMESPACE_LABEL, REFERENCE_PLUGINS, labelled_containers, mounts_under
from bench.logcheck import SequenceCount, count_sequence, cri_payloads, last_payload
from bench.procmem import cpu_of, memory_of
from bench.stats import paired_difference_p50, percentile, ratio, summarize_ms
from cri_api import api_pb2, api_pb2_grpc

log = logging.getLogger(__name__)

IMAGE = "cri-shim.test/busybox:latest"
DOCKER_ENDPOINT = "unix:///var/run/docker.sock"
# What the shim gives Docker for a container's journal (shim.container.docker_config); the
# floor must not import it, so it is repeated here.
JOURNAL = {"max-size": "50m", "max-file": "2"}
SLEEP = ["sleep", "3600"]
IDLE_WINDOW_S = 20.0
CREATE_START_TARGET = 1.10
RELIST_P99_TARGET_MS = 10.0
SHIM_RSS_TARGET_MIB = 150.0
LOG_RATE_TARGET_MB_S = 20.0
# `%09d ` + padding + newline: 96 bytes a line.
LOG_PAD = "abcdefghijklmnopqrstuvwxyz0123456789" * 3
LOG_LINE_BYTES = 10 + 85 + 1
LOG_TIMEOUT_S = 300.0
MB = 1_000_000


@dataclass(frozen=True)
class ContainerBenchConfig:
    samples: int = 30
    warmup: int = 3
    relist_pods: int = 110
    relists: int = 200
    setup_concurrency: int = 8
    log_lines: int = 2_000_000
    log_level: str = "info"


def _writer_script(lines: int) -> list[str]:
    pad = LOG_PAD[:85]
    program = f'BEGIN{{for(i=1;i<={lines};i++) printf "%09d {pad}\\n", i}}'
    return ["awk", program]


class Pods:
    """Sandboxes and containers through the shim's gRPC API; remembers every id for clean-up."""

    def __init__(self, stub: api_pb2_grpc.RuntimeServiceStub, namespace: str, log_root: str):
        self.stub = stub
        self.namespace = namespace
        self.log_root = log_root
        self.sandboxes: dict[str, api_pb2.PodSandboxConfig] = {}
        self.containers: dict[str, str] = {}  # container id -> sandbox id
        self._guard = threading.Lock()

    def run_sandbox(self, name: str) -> str:
        uid = uuid.uuid4().hex
        config = api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(
                name=name, namespace=self.namespace, uid=uid, attempt=0
            ),
            hostname=name,
            log_directory=os.path.join(self.log_root, f"{self.namespace}_{name}_{uid}"),
            linux=api_pb2.LinuxPodSandboxConfig(
                security_context=api_pb2.LinuxSandboxSecurityContext(
                    namespace_options=api_pb2.NamespaceOption(network=api_pb2.NODE)
                )
            ),
        )
        response = self.stub.RunPodSandbox(
            api_pb2.RunPodSandboxRequest(config=config), timeout=RPC_TIMEOUT_S
        )
        sandbox_id = str(response.pod_sandbox_id)
        with self._guard:
            self.sandboxes[sandbox_id] = config
        return sandbox_id

    def create(self, sandbox_id: str, name: str, command: list[str]) -> str:
        config = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=name, attempt=0),
            image=api_pb2.ImageSpec(image=IMAGE),
            command=command,
            log_path=f"{name}/0.log",
            labels={"io.kubernetes.container.name": name},
        )
        response = self.stub.CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=sandbox_id, config=config, sandbox_config=self.sandboxes[sandbox_id]
            ),
            timeout=RPC_TIMEOUT_S,
        )
        container_id = str(response.container_id)
        with self._guard:
            self.containers[container_id] = sandbox_id
        return container_id

    def start(self, container_id: str) -> None:
        self.stub.StartContainer(
            api_pb2.StartContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT_S
        )

    def status(self, container_id: str) -> api_pb2.ContainerStatus:
        response = self.stub.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=container_id), timeout=RPC_TIMEOUT_S
        )
        return response.status

    def remove_container(self, container_id: str) -> None:
        # `sleep` as PID 1 ignores SIGTERM: a zero grace period, as kubelet's force delete.
        self.stub.StopContainer(
            api_pb2.StopContainerRequest(container_id=container_id, timeout=0),
            timeout=RPC_TIMEOUT_S,
        )
        self.stub.RemoveContainer(
            api_pb2.RemoveContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT_S
        )
        with self._guard:
            self.containers.pop(container_id, None)

    def remove_pod(self, sandbox_id: str) -> None:
        with self._guard:
            mine = [c for c, s in self.containers.items() if s == sandbox_id]
        for container_id in mine:
            self.remove_container(container_id)
        self.stub.StopPodSandbox(
            api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=RPC_TIMEOUT_S
        )
        self.stub.RemovePodSandbox(
            api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=RPC_TIMEOUT_S
        )
        with self._guard:
            self.sandboxes.pop(sandbox_id, None)

    def remove_everything(self, workers: int) -> None:
        """Every container and sandbox the shim lists (not only the ones we know of)."""
        listed = self.stub.ListContainers(api_pb2.ListContainersRequest(), timeout=RPC_TIMEOUT_S)
        with self._guard:
            for c in listed.containers:
                self.containers.setdefault(str(c.id), str(c.pod_sandbox_id))
        pods = self.stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=RPC_TIMEOUT_S)
        ids = {str(p.id) for p in pods.items} | set(self.sandboxes)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(self.remove_pod, sorted(ids)))


class FloorContainers:
    """`docker create` + `docker start` of the body the shim gives Docker, nothing else.
    Deliberately not the shim's code: the baseline must not share it."""

    def __init__(self, api: docker.APIClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.image_id = str(api.inspect_image(IMAGE)["Id"])  # type: ignore[no-untyped-call]
        self.ids: set[str] = set()
        self._guard = threading.Lock()

    def create(
        self, sandbox_id: str, name: str, command: list[str], journal: dict[str, str] | None = None
    ) -> str:
        sandbox = f"container:{sandbox_id}"
        body: dict[str, Any] = {
            "Image": self.image_id,
            "Entrypoint": command,
            "Env": [],
            "WorkingDir": "",
            # As many labels as the shim's containers carry, one of them a JSON spec.
            "Labels": {
                POD_NAMESPACE_LABEL: self.namespace,
                "io.kubernetes.pod.name": "floor",
                "io.kubernetes.pod.uid": uuid.uuid4().hex,
                "io.kubernetes.sandbox.id": sandbox_id,
                "io.kubernetes.docker.type": "container",
                "io.kubernetes.container.name": name,
                "io.cri-shim.attempt": "0",
                "io.cri-shim.log-path": f"/var/log/pods/floor/{name}/0.log",
                "io.cri-shim.spec": json.dumps({"name": name, "image": IMAGE, "labels": {}}),
                "io.cri-shim.container": "true",
                "io.cri-shim.bench": "floor",
            },
            "Tty": False,
            "OpenStdin": False,
            "StdinOnce": False,
            "AttachStdin": False,
            "AttachStdout": True,
            "AttachStderr": True,
            "Healthcheck": {"Test": ["NONE"]},
            "HostConfig": {
                "RestartPolicy": {"Name": "no"},
                "LogConfig": {
                    "Type": "json-file",
                    "Config": dict(JOURNAL if journal is None else journal),
                },
                "CgroupParent": "",
                "Binds": [],
                "Devices": [],
                "NetworkMode": sandbox,
                "IpcMode": sandbox,
                "UTSMode": "host",
            },
        }
        created = self.api.create_container_from_config(  # type: ignore[no-untyped-call]
            body, f"{self.namespace}-floor-{name}"
        )
        container_id = str(created["Id"])
        with self._guard:
            self.ids.add(container_id)
        return container_id

    def start(self, container_id: str) -> None:
        self.api.start(container_id)

    def remove(self, container_id: str) -> None:
        self.api.remove_container(container_id, force=True, v=True)
        with self._guard:
            self.ids.discard(container_id)


def _clock(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---- 1. CreateContainer + StartContainer against docker create + start ---------------------


def create_start(
    pods: Pods, floor: FloorContainers, sandbox_id: str, cfg: ContainerBenchConfig
) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {
        side: {"create": [], "start": [], "create_start": []} for side in ("shim", "floor")
    }
    made: dict[str, list[str]] = {"shim": [], "floor": []}

    def shim_once(name: str) -> tuple[float, float]:
        holder: list[str] = []
        created = _clock(lambda: holder.append(pods.create(sandbox_id, name, SLEEP)))
        made["shim"].append(holder[0])
        return created, _clock(lambda: pods.start(holder[0]))

    def floor_once(name: str) -> tuple[float, float]:
        holder: list[str] = []
        created = _clock(lambda: holder.append(floor.create(sandbox_id, name, SLEEP)))
        made["floor"].append(holder[0])
        return created, _clock(lambda: floor.start(holder[0]))

    sides: list[tuple[str, Callable[[str], tuple[float, float]]]] = [
        ("shim", shim_once),
        ("floor", floor_once),
    ]
    try:
        for i in range(cfg.warmup + cfg.samples):
            # Alternate which side goes first (ABBA), so drift falls on both alike.
            for side, once in sides if i % 2 == 0 else sides[::-1]:
                created, started = once(f"cs{i}")
                if i >= cfg.warmup:
                    samples[side]["create"].append(created)
                    samples[side]["start"].append(started)
                    samples[side]["create_start"].append(created + started)
    finally:
        for container_id in made["shim"]:
            with contextlib.suppress(grpc.RpcError):
                pods.remove_container(container_id)
        for container_id in made["floor"]:
            with contextlib.suppress(docker.errors.APIError):
                floor.remove(container_id)
    shim_p50 = percentile(samples["shim"]["create_start"], 50)
    floor_p50 = percentile(samples["floor"]["create_start"], 50)
    value = ratio(shim_p50, floor_p50)
    return {
        "samples": cfg.samples,
        "warmup": cfg.warmup,
        "order": "one shim and one floor container alternately, ABBA",
        "containers_accumulate": "each side's containers keep running until the section ends",
        "shim": {k: summarize_ms(v) for k, v in samples["shim"].items()},
        "floor": {k: summarize_ms(v) for k, v in samples["floor"].items()},
        "ratio_p50": value,
        "ratio_p99": ratio(
            percentile(samples["shim"]["create_start"], 99),
            percentile(samples["floor"]["create_start"], 99),
        ),
        "paired_overhead_p50_ms": round(
            paired_difference_p50(samples["shim"]["create_start"], samples["floor"]["create_start"])
            * 1000,
            2,
        ),
        "target": CREATE_START_TARGET,
        "meets_target": bool(value <= CREATE_START_TARGET),
    }


# ---- 2. relist with many pods ---------------------------------------------------------------


def set_up_pods(pods: Pods, count: int, workers: int) -> dict[str, Any]:
    def one(i: int) -> float:
        start = time.perf_counter()
        sandbox_id = pods.run_sandbox(f"rl{i}")
        for c in ("app", "sidecar"):
            pods.start(pods.create(sandbox_id, c, SLEEP))
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="setup") as pool:
        per_pod = list(pool.map(one, range(count)))
    return {
        "pods": count,
        "containers": 2 * count,
        "concurrency": workers,
        "wall_s": round(time.perf_counter() - start, 1),
        "per_pod_run_create_start": summarize_ms(per_pod),
    }


def relist(pods: Pods, sandboxes: int, containers: list[str], rounds: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {
        "ListPodSandbox": [],
        "ListContainers": [],
        "ContainerStatus": [],
        "list_both": [],
        "full_relist": [],
    }
    stub = pods.stub
    miscounted = 0
    for i in range(rounds):
        t0 = time.perf_counter()
        listed_pods = stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=RPC_TIMEOUT_S)
        t1 = time.perf_counter()
        listed = stub.ListContainers(api_pb2.ListContainersRequest(), timeout=RPC_TIMEOUT_S)
        t2 = time.perf_counter()
        pods.status(containers[i % len(containers)])
        t3 = time.perf_counter()
        if len(listed_pods.items) != sandboxes or len(listed.containers) != len(containers):
            miscounted += 1
        times["ListPodSandbox"].append(t1 - t0)
        times["ListContainers"].append(t2 - t1)
        times["ContainerStatus"].append(t3 - t2)
        times["list_both"].append(t2 - t0)
        times["full_relist"].append(t3 - t0)
    p99 = percentile(times["list_both"], 99) * 1000
    return {
        "relists": rounds,
        "pacing": "back to back (kubelet's PLEG relists once a second)",
        "listed_sandboxes": sandboxes,
        "listed_containers": len(containers),
        "relists_with_wrong_counts": miscounted,
        **{k: summarize_ms(v) for k, v in times.items()},
        "list_both_p99_ms": round(p99, 2),
        "target_p99_ms": RELIST_P99_TARGET_MS,
        "meets_target": bool(p99 <= RELIST_P99_TARGET_MS),
    }


def idle_cpu_percent(pid: int) -> float:
    """The shim's CPU use while nobody calls it (its Docker event watch, log followers of
    silent containers re-opening idle streams), over IDLE_WINDOW_S, in % of one core."""
    before, start = cpu_of(pid), time.perf_counter()
    time.sleep(IDLE_WINDOW_S)
    return round(100 * (cpu_of(pid) - before) / (time.perf_counter() - start), 1)


# ---- 4. log throughput ----------------------------------------------------------------------


def _tail(path: str, size: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read()
    except FileNotFoundError:
        return b""


def _check_file(path: str, lines: int) -> SequenceCount:
    with open(path, "rb") as f:
        return count_sequence(cri_payloads(f), lines)


def log_throughput(
    pods: Pods, floor: FloorContainers, sandbox_id: str, lines: int
) -> dict[str, Any]:
    final = b"%09d" % lines
    payload_mb = lines * LOG_LINE_BYTES / MB
    container_id = pods.create(sandbox_id, "logger", _writer_script(lines))
    sandbox_config = pods.sandboxes[sandbox_id]
    path = os.path.join(sandbox_config.log_directory, "logger/0.log")
    start = time.perf_counter()
    pods.start(container_id)
    started = time.perf_counter()
    file_done = exited_reported = None
    deadline = start + LOG_TIMEOUT_S
    next_status = 0.0
    while time.perf_counter() < deadline and (file_done is None or exited_reported is None):
        now = time.perf_counter()
        if file_done is None:
            last = last_payload(_tail(path))
            if last is not None and last.startswith(final):
                file_done = now
        if exited_reported is None and now >= next_status:
            next_status = now + 0.1
            if pods.status(container_id).state == api_pb2.CONTAINER_EXITED:
                exited_reported = time.perf_counter()
        time.sleep(0.01)
    cri_bytes = os.path.getsize(path) if os.path.exists(path) else 0
    inspect = floor.api.inspect_container(container_id)["State"]
    counts = _check_file(path, lines)
    done = file_done or exited_reported
    elapsed = (done - start) if done is not None else math.nan
    delivered_mb = counts.lines * LOG_LINE_BYTES / MB
    shim: dict[str, Any] = {
        "lines_written": lines,
        "payload_mb": round(payload_mb, 1),
        "cri_file_mb": round(cri_bytes / MB, 1),
        "start_rpc_ms": round((started - start) * 1000, 2),
        "seconds_to_last_line": round(file_done - start, 2) if file_done else None,
        "seconds_to_exited_reported": round(exited_reported - start, 2)
        if exited_reported
        else None,
        "container_ran_s": _ran_s(inspect),
        # What reached the file: lost lines do not count as throughput.
        "delivered_payload_mb_s": round(delivered_mb / elapsed, 1) if done else None,
        "offered_payload_mb_s": round(payload_mb / elapsed, 1) if done else None,
        "cri_file_mb_s": round(cri_bytes / MB / elapsed, 1) if done else None,
        "timed_out": done is None,
        "lines_in_file": counts.lines,
        **{k: v for k, v in counts.as_dict().items() if k not in ("expected", "lines")},
    }
    docker_rate = _docker_json_file_rate(floor, sandbox_id, lines)
    rate = shim["delivered_payload_mb_s"] or 0.0
    lossless = counts.lost == 0 and counts.duplicated == 0
    return {
        "writer": f"awk printing lines 1..{lines}, {LOG_LINE_BYTES} bytes each, as fast as it can",
        "journal": JOURNAL,
        "measured": "from StartContainer until the CRI file's last line is the writer's last",
        "shim": shim,
        "docker_json_file": docker_rate,
        "ratio_to_docker": ratio(rate, docker_rate.get("payload_mb_s") or math.nan),
        "target_mb_s": LOG_RATE_TARGET_MB_S,
        "meets_target": bool(rate >= LOG_RATE_TARGET_MB_S and lossless),
    }


def _ran_s(state: dict[str, Any]) -> float | None:
    try:
        began = datetime.fromisoformat(state["StartedAt"][:26] + "+00:00")
        ended = datetime.fromisoformat(state["FinishedAt"][:26] + "+00:00")
    except (KeyError, ValueError):
        return None
    return round((ended - began).total_seconds(), 2)


def _docker_json_file_rate(floor: FloorContainers, sandbox_id: str, lines: int) -> dict[str, Any]:
    """The same writer under Docker alone, json-file without rotation: until its last line is
    in Docker's file (Docker's copier blocks the writer, so this is Docker's ingest rate)."""
    final = b'"%09d' % lines
    container_id = floor.create(sandbox_id, "docker-logger", _writer_script(lines), journal={})
    try:
        start = time.perf_counter()
        floor.start(container_id)
        # Docker names the json-file only at start.
        path = str(floor.api.inspect_container(container_id)["LogPath"])
        floor.api.wait(container_id, timeout=int(LOG_TIMEOUT_S))
        exited = time.perf_counter()
        done = None
        while time.perf_counter() < exited + 30:
            tail = _tail(path)
            end = tail.rfind(b"\n", 0, len(tail) - 1) + 1
            if final in tail[end:]:
                done = time.perf_counter()
                break
            time.sleep(0.01)
        size = os.path.getsize(path)
        payload_mb = lines * LOG_LINE_BYTES / MB
        return {
            "seconds_to_exit": round(exited - start, 2),
            "seconds_to_last_line": round(done - start, 2) if done else None,
            "json_file_mb": round(size / MB, 1),
            "payload_mb_s": round(payload_mb / (done - start), 1) if done else None,
        }
    finally:
        floor.remove(container_id)


# ---- the run --------------------------------------------------------------------------------


@contextlib.contextmanager
def private_shim(workdir: str, log_level: str) -> Iterator[ShimProcess]:
    shim = ShimProcess(os.path.join(workdir, "shim"), [REFERENCE_PLUGINS], log_level)
    try:
        shim.start()
        yield shim
    finally:
        shim.terminate()


def run(cfg: ContainerBenchConfig) -> dict[str, Any]:
    namespace = f"crbench-ctr-{os.getpid()}"
    workdir = tempfile.mkdtemp(prefix="crbctr-")
    report: dict[str, Any] = {
        "network": "hostNetwork sandboxes (namespace_options network=NODE): no CNI",
        "image": IMAGE,
        "pod_namespace": namespace,
    }
    memory: dict[str, Any] = {}
    report["memory"] = memory
    api = docker.APIClient(base_url=DOCKER_ENDPOINT, version="auto", timeout=300, max_pool_size=32)
    pods: Pods | None = None
    shim_root = os.path.join(workdir, "shim", "root")
    try:
        with private_shim(workdir, cfg.log_level) as shim:
            assert shim.proc is not None
            pid = shim.proc.pid
            time.sleep(1.0)  # the warm worker starts beside the server
            memory["idle"] = memory_of(pid)
            pods = Pods(shim.runtime(), namespace, os.path.join(workdir, "pods"))
            floor = FloorContainers(api, namespace)
            try:
                sandbox_id = pods.run_sandbox("create-start")
                report["create_start"] = _section(
                    lambda: create_start(pods, floor, sandbox_id, cfg)
                )
                memory["after_create_start"] = memory_of(pid)
                pods.remove_pod(sandbox_id)

                setup = _section(lambda: set_up_pods(pods, cfg.relist_pods, cfg.setup_concurrency))
                memory[f"with_{cfg.relist_pods}_pods"] = memory_of(pid)
                setup["shim_idle_cpu_percent"] = idle_cpu_percent(pid)
                containers = sorted(pods.containers)
                report["relist"] = {"setup": setup} | _section(
                    lambda: relist(pods, len(pods.sandboxes), containers, cfg.relists)
                )
                memory["after_relists"] = memory_of(pid)
                start = time.perf_counter()
                pods.remove_everything(cfg.setup_concurrency)
                report["relist"]["teardown_wall_s"] = round(time.perf_counter() - start, 1)
                memory["after_teardown"] = memory_of(pid)

                sandbox_id = pods.run_sandbox("log")
                cpu_before = cpu_of(pid)
                report["log_throughput"] = _section(
                    lambda: log_throughput(pods, floor, sandbox_id, cfg.log_lines)
                )
                report["log_throughput"]["shim_cpu_s_whole_section"] = round(
                    cpu_of(pid) - cpu_before, 1
                )
                memory["after_log_throughput"] = memory_of(pid)
                peak = max(float(m["shim_vm_rss_mib"]) for m in memory.values())
                memory["shim_peak_vm_rss_mib"] = peak
                memory["target_mib"] = SHIM_RSS_TARGET_MIB
                memory["meets_target"] = bool(peak <= SHIM_RSS_TARGET_MIB)
            finally:
                with contextlib.suppress(Exception):
                    pods.remove_everything(cfg.setup_concurrency)
                for container_id in list(floor.ids):
                    with contextlib.suppress(docker.errors.APIError):
                        floor.remove(container_id)
    finally:
        for container_id in labelled_containers(namespace):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(container_id, force=True, v=True)
        mounts = mounts_under(shim_root)
        shutil.rmtree(workdir, ignore_errors=True)
        left = labelled_containers(namespace)
        report["clean_at_exit"] = not left and not mounts and not os.path.exists(workdir)
        if not report["clean_at_exit"]:
            report["leftovers_at_exit"] = {"containers": left, "mounts": mounts}
            log.error("container benchmark leftovers: %s", report["leftovers_at_exit"])
        api.close()
    return report


def _section(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A failed section is reported, and the next one still runs."""
    try:
        return fn()
    except Exception as err:
        log.exception("container benchmark section failed")
        return {"error": f"{type(err).__name__}: {err}"}


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.bench_containers`: this section alone, for trying it out."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m bench.bench_containers")
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--relist-pods", type=int, default=110)
    p.add_argument("--relists", type=int, default=200)
    p.add_argument("--log-lines", type=int, default=2_000_000)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    cfg = ContainerBenchConfig(
        samples=args.samples,
        relist_pods=args.relist_pods,
        relists=args.relists,
        log_lines=args.log_lines,
    )
    sys.stdout.write(json.dumps(run(cfg), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
