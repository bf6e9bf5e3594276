"""The shim under lifecycle load, on private shims of its own (`python -m bench`'s "load"):

- status_under_load: RuntimeService/Status and ListPodSandbox, probed back to back (as kubelet's
  node status and PLEG would ask, only much more often) by a prober process of its own
  (bench.prober), first with nothing in flight (the baseline), then while Docker alone starts
  `in_flight` infra containers at once (the floor: what the machine's saturated CPU costs the
  probes of an idle shim), then while `in_flight` RunPodSandbox calls are in flight at once.
  Those calls are made slow and stuck by a tiny shell plugin of ours at the head of the chain
  (then our bridge + host-local): its ADD marks its arrival, then waits on a shared flock(1)
  the benchmark holds exclusively, and answers an empty result. The lock is released once
  every call has reached the plugin and `hold_s` has passed (a dead benchmark releases it
  too; the plugin gives up waiting after STUCK_CAP_S). Probes are split by phase: "starting"
  (Docker creating and starting the infra containers), "held" (every call parked in ADD),
  "finishing" (the bridge ADDs after release). The target applies to all of them together.
- run_throughput: RunPodSandbox pods/s at `concurrency`, through the same shim code on our
  own plugins (netplugins, installed with `python -m netplugins install`, warm worker on)
  versus Debian's reference binaries (/usr/lib/cni), each shim on its own bridge with the same
  conflist shape (bridge + host-local, then portmap), rounds alternating ABBA; then the warm
  worker's counts (Status verbose "cniExecutor"), where "fallback" must be 0.

Everything is labelled with this run's pod namespace; clean-up releases the lock, removes pods
through the shims, then whatever Docker, the bridges and iptables still hold of them, then the
private directories, and reports what is left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from bench.bench_shim import RPC_TIMEOUT_S, ShimPods, ShimProcess
from bench.docker_floor import docker_burst
from bench.hostnet import (
    CNI_VERSION,
    DOCKER,
    INFRA_IMAGE,
    REFERENCE_PLUGINS,
    BenchNetwork,
    force_cleanup,
    leftovers,
)
from bench.measure import Samples, concurrently, one_at_a_time
from bench.prober import ProberProcess, now
from bench.stats import percentile, ratio, summarize_ms
from cri_api import api_pb2

log = logging.getLogger(__name__)

STATUS_P99_TARGET_MS = 20.0
THROUGHPUT_TARGET = 1.0
STUCK_TYPE = "crload-stuck"
# The stuck plugin never waits longer than this, whatever becomes of the benchmark.
STUCK_CAP_S = 90
ARRIVAL_TIMEOUT_S = 120.0
PHASES = ("starting", "held", "finishing")

_STUCK_SCRIPT = """#!/bin/sh
# bench.bench_load's stuck CNI plugin: ADD marks its arrival, waits (at most {cap} s) for the
# shared lock the benchmark holds, then answers an empty result; every other command succeeds.
cat >/dev/null
case "$CNI_COMMAND" in
VERSION)
  printf '%s\\n' '{{"cniVersion":"{version}","supportedVersions":{supported}}}'
  ;;
ADD)
  : >"{arrived}/$CNI_CONTAINERID"
  flock -s -w {cap} "{lock}" true || true
  printf '%s\\n' '{{"cniVersion":"{version}","interfaces":[],"ips":[],"dns":{{}}}}'
  ;;
esac
exit 0
"""


@dataclass(frozen=True)
class LoadBenchConfig:
    in_flight: int = 30
    hold_s: float = 6.0
    baseline_s: float = 5.0
    probe_gap_s: float = 0.01
    throughput_pods: int = 24
    concurrency: int = 8
    # Per plugin set, ABBA...: the two differ only in the CNI share of a RunPodSandbox (a few
    # per cent of it), so the rounds must be many enough for the machine's drift to average out.
    rounds: int = 6
    warmup: int = 2
    log_level: str = "info"


# -- pure helpers (tests/unit/test_bench_load.py) -----------------------------------------


def abba(labels: tuple[str, str], rounds: int) -> list[str]:
    """`rounds` turns each, alternating which goes first: A B B A A B ..."""
    order: list[str] = []
    for r in range(rounds):
        order.extend(labels if r % 2 == 0 else labels[::-1])
    return order


def phase_of(t: float, all_arrived: float, released: float) -> str:
    """Which phase of the in-flight window a probe started at `t` belongs to."""
    if t < all_arrived:
        return "starting"
    if t < released:
        return "held"
    return "finishing"


def pods_per_s(pods: int, wall_s: float) -> float:
    return round(pods / wall_s, 3) if wall_s > 0 else float("nan")


def meets(p99_ms: float, target_ms: float) -> bool:
    return bool(p99_ms == p99_ms and p99_ms <= target_ms)  # NaN (no samples) never meets


# -- probing --------------------------------------------------------------------------------


def _summary(samples: Sequence[tuple[float, float]]) -> dict[str, Any]:
    return summarize_ms([d for _, d in samples])


def _by_phase(
    samples: Sequence[tuple[float, float]], all_arrived: float, released: float
) -> dict[str, Any]:
    return {
        phase: _summary([s for s in samples if phase_of(s[0], all_arrived, released) == phase])
        for phase in PHASES
    }


# -- the private host pieces -----------------------------------------------------------------


def install_our_plugins(directory: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "netplugins", "install", directory],
        check=True,
        capture_output=True,
        timeout=120,
    )


def write_stuck_plugin(directory: str, arrived_dir: str, lock_path: str) -> None:
    os.makedirs(directory, exist_ok=True)
    os.makedirs(arrived_dir, exist_ok=True)
    path = os.path.join(directory, STUCK_TYPE)
    with open(path, "w") as f:
        f.write(
            _STUCK_SCRIPT.format(
                cap=STUCK_CAP_S,
                version=CNI_VERSION,
                supported=json.dumps(["0.3.0", "0.3.1", "0.4.0", "1.0.0"]),
                arrived=arrived_dir,
                lock=lock_path,
            )
        )
    os.chmod(path, 0o755)


@contextlib.contextmanager
def held_lock(path: str) -> Iterator[Callable[[], None]]:
    """Hold an exclusive flock on `path`; yields a release() that may be called early."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    try:
        yield release
    finally:
        release()


def executor_counts(shim: ShimProcess) -> dict[str, int] | None:
    response = shim.runtime().Status(api_pb2.StatusRequest(verbose=True), timeout=RPC_TIMEOUT_S)
    raw = response.info.get("cniExecutor")
    counts: dict[str, int] | None = json.loads(raw) if raw else None
    return counts


def check_pod_address(pods: ShimPods, name: str, net: BenchNetwork) -> str:
    import ipaddress

    pod_id = pods.run(name)
    try:
        ip = pods.pod_ip(pod_id)
    finally:
        pods.stop(pod_id)
        pods.remove(pod_id)
    if not ip or ipaddress.ip_address(ip) not in ipaddress.ip_network(net.subnet):
        raise RuntimeError(f"{pods.label} pod {pod_id} got address {ip!r}, not in {net.subnet}")
    return ip


def _named_containers(pod_namespace: str) -> list[str]:
    """Containers whose name carries the benchmark's pod namespace (k8s_POD_<name>_<ns>_...)."""
    out = subprocess.run(
        [DOCKER, "ps", "-a", "--format", "{{.Names}}", "--filter", f"name=_{pod_namespace}_"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return out.stdout.split()


# -- the two measurements ------------------------------------------------------------------


def status_under_load(
    cfg: LoadBenchConfig, shim: ShimProcess, pods: ShimPods, lock_path: str, arrived_dir: str
) -> dict[str, Any]:
    with ProberProcess(shim.endpoint, cfg.probe_gap_s) as idle:
        time.sleep(cfg.baseline_s)
    # The floor: the same shim idle while Docker alone starts as many infra containers at
    # once as the RunPodSandbox calls below will; what the probes lose here is the machine's.
    with ProberProcess(shim.endpoint, cfg.probe_gap_s) as floor:
        docker_floor = docker_burst(cfg.in_flight, INFRA_IMAGE, None)

    names = [f"load-{i}" for i in range(cfg.in_flight)]
    runs: list[Future[str]] = []
    with (
        held_lock(lock_path) as release,
        ThreadPoolExecutor(max_workers=cfg.in_flight, thread_name_prefix="load") as pool,
        ProberProcess(shim.endpoint, cfg.probe_gap_s) as loaded,
    ):
        started = now()
        try:
            runs = [pool.submit(pods.run, name) for name in names]
            deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
            while len(os.listdir(arrived_dir)) < cfg.in_flight:
                failed = [f for f in runs if f.done()]
                if failed or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"only {len(os.listdir(arrived_dir))} of {cfg.in_flight} RunPodSandbox"
                        f" calls reached the stuck plugin ({len(failed)} returned early)"
                    )
                time.sleep(0.02)
            all_arrived = now()
            time.sleep(cfg.hold_s)
        finally:
            released = now()
            release()
        done, _ = wait(runs, timeout=RPC_TIMEOUT_S)
        finished = now()
    errors = [f"{type(e).__name__}: {e}" for f in done if (e := f.exception()) is not None]
    if errors or len(done) != len(runs):
        raise RuntimeError(f"RunPodSandbox under load failed: {errors[:3]}")
    ids = [f.result() for f in runs]
    # Tear the pods down at the throughput benchmark's concurrency (Stop, then Remove).
    with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
        list(pool.map(pods.stop, ids))
        list(pool.map(pods.remove, ids))

    base, docker_only = idle.probes, floor.probes
    status = [s for s in loaded.probes.status if s[0] < finished]
    list_pods = [s for s in loaded.probes.list_pods if s[0] < finished]
    status_p99 = percentile([d for _, d in status], 99) * 1000
    base_status = _summary(base.status)
    floor_status = _summary(docker_only.status)
    return {
        "in_flight_run_pod_sandbox": cfg.in_flight,
        "probe_gap_ms": cfg.probe_gap_s * 1000,
        "baseline": {
            "window_s": cfg.baseline_s,
            "status": base_status,
            "list_pod_sandbox": _summary(base.list_pods),
            "probe_errors": base.errors[:5],
        },
        "idle_shim_during_docker_only_burst": {
            "docker": docker_floor,
            "status": floor_status,
            "list_pod_sandbox": _summary(docker_only.list_pods),
            "probe_errors": docker_only.errors[:5],
        },
        "under_load": {
            "status": _summary(status),
            "list_pod_sandbox": _summary(list_pods),
            "status_by_phase": _by_phase(status, all_arrived, released),
            "list_pod_sandbox_by_phase": _by_phase(list_pods, all_arrived, released),
            "phase_s": {
                "starting": round(all_arrived - started, 2),
                "held": round(released - all_arrived, 2),
                "finishing": round(finished - released, 2),
            },
            "probe_errors": loaded.probes.errors[:5],
        },
        "status_p99_ratio_to_baseline": ratio(status_p99, float(base_status["p99_ms"])),
        "status_p99_ratio_to_docker_only_floor": ratio(status_p99, float(floor_status["p99_ms"])),
        "target_status_p99_ms": STATUS_P99_TARGET_MS,
        "meets_target": meets(status_p99, STATUS_P99_TARGET_MS),
    }


def run_throughput(
    cfg: LoadBenchConfig, drivers: dict[str, tuple[ShimProcess, ShimPods]]
) -> dict[str, Any]:
    samples = {label: Samples() for label in drivers}
    order = abba(("ours", "reference"), cfg.rounds)
    for r, label in enumerate(order):
        names = [f"tp-{label}-{r}-{i}" for i in range(cfg.throughput_pods)]
        concurrently(drivers[label][1], names, cfg.concurrency, samples[label])
    out: dict[str, Any] = {
        "pods_per_round": cfg.throughput_pods,
        "concurrency": cfg.concurrency,
        "order": order,
    }
    rate: dict[str, float] = {}
    for label, s in samples.items():
        walls = s.wall.get("run", [])
        rate[label] = pods_per_s(cfg.throughput_pods * len(walls), sum(walls))
        out[label] = {
            "bin_dir": drivers[label][0].bin_dirs[0],
            "run_pods_per_s": rate[label],
            "run_pods_per_s_by_round": [pods_per_s(cfg.throughput_pods, w) for w in walls],
            "latency": s.summary(),
        }
    out["ratio_ours_to_reference"] = ratio(rate["ours"], rate["reference"])
    out["target_ratio"] = THROUGHPUT_TARGET
    out["meets_target"] = bool(out["ratio_ours_to_reference"] >= THROUGHPUT_TARGET)
    counts = executor_counts(drivers["ours"][0])
    out["ours"]["cni_executor"] = counts
    out["warm_fallback_zero"] = counts is not None and counts.get("fallback", -1) == 0
    return out


# -- the section --------------------------------------------------------------------------


def run(cfg: LoadBenchConfig) -> dict[str, Any]:
    pid = os.getpid()
    namespace = f"crload-{pid}"
    workdir = tempfile.mkdtemp(prefix="crload-")
    ours_bin = os.path.join(workdir, "ours-bin")
    stuck_bin = os.path.join(workdir, "stuck-bin")
    arrived_dir = os.path.join(workdir, "arrived")
    lock_path = os.path.join(workdir, "stuck.lock")
    nets = {
        label: BenchNetwork(
            bridge=f"crl{label[0]}{pid % 100000}",
            subnet=f"10.{octet}.{pid % 250 + 1}.0/24",
            data_dir=os.path.join(workdir, f"ipam-{label}"),
            name=f"crload-{label}",
        )
        for label, octet in (("load", 207), ("ours", 208), ("reference", 209))
    }
    shims = {
        label: ShimProcess(os.path.join(workdir, f"shim-{label}"), bin_dirs, cfg.log_level)
        for label, bin_dirs in (
            ("load", [ours_bin, stuck_bin]),
            ("ours", [ours_bin]),
            ("reference", [REFERENCE_PLUGINS]),
        )
    }
    load_conflist = nets["load"].conflist()
    load_conflist["plugins"] = [{"type": STUCK_TYPE}, load_conflist["plugins"][0]]
    shims["load"].write_conflist(load_conflist)
    shims["ours"].write_conflist(nets["ours"].conflist())
    shims["reference"].write_conflist(nets["reference"].conflist())
    report: dict[str, Any] = {
        "pod_namespace": namespace,
        "conflists": {
            "load": f"{STUCK_TYPE} (shell, ADD waits on a lock) + bridge/host-local (ours)",
            "throughput": "bridge/host-local + portmap, ours vs reference",
        },
    }
    pods: dict[str, ShimPods] = {}
    try:
        install_our_plugins(ours_bin)
        write_stuck_plugin(stuck_bin, arrived_dir, lock_path)

        shims["load"].start()
        pods["load"] = ShimPods(shims["load"], namespace)
        pods["load"].label = "load"
        check_pod_address(pods["load"], "load-sanity", nets["load"])
        for f in os.listdir(arrived_dir):
            os.unlink(os.path.join(arrived_dir, f))
        report["status_under_load"] = status_under_load(
            cfg, shims["load"], pods["load"], lock_path, arrived_dir
        )
        report["status_under_load"]["cni_executor"] = executor_counts(shims["load"])
        shims["load"].terminate()

        drivers: dict[str, tuple[ShimProcess, ShimPods]] = {}
        for label in ("ours", "reference"):
            shims[label].start()
            pods[label] = ShimPods(shims[label], namespace)
            pods[label].label = label
            drivers[label] = (shims[label], pods[label])
        report["sanity_pod_ips"] = {
            label: check_pod_address(p, f"{label}-sanity", nets[label])
            for label, (_, p) in drivers.items()
        }
        for label, (_, p) in drivers.items():
            one_at_a_time(p, [f"{label}-warm-{i}" for i in range(cfg.warmup)], None)
        report["run_throughput"] = run_throughput(cfg, drivers)
    finally:
        report["host"] = _clean_up(namespace, workdir, shims, pods, nets)
    return report


def _clean_up(
    namespace: str,
    workdir: str,
    shims: dict[str, ShimProcess],
    pods: dict[str, ShimPods],
    nets: dict[str, BenchNetwork],
) -> dict[str, Any]:
    ids: set[str] = set()
    for label, shim in shims.items():
        p = pods.get(label)
        if p is not None:
            if shim.proc is not None and shim.proc.poll() is None:
                try:
                    p.remove_all()
                except Exception as err:
                    log.error("removing the %s shim's pods failed: %s", label, err)
            ids |= p.ids
        shim.terminate()
    for label, net in nets.items():
        force_cleanup(net, namespace, ids, shims[label].root)
    final = {
        label: leftovers(net, namespace, ids, shims[label].root, bridge=True)
        for label, net in nets.items()
    }
    shutil.rmtree(workdir, ignore_errors=True)
    left: dict[str, Any] = {
        label: found.as_dict() for label, found in final.items() if not found.empty()
    }
    named = _named_containers(namespace)
    if named:
        left["containers_by_name"] = named
    if os.path.exists(workdir):
        left["workdir"] = workdir
    if left:
        log.error("the load benchmark left things behind: %s", left)
    return {"clean_at_exit": not left, **({"leftovers_at_exit": left} if left else {})}
