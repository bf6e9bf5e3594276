"""`make bench`'s kubelet section: a real kubelet v1.34 on a private cri-shim (our own CNI
plugins, a private bridge), measured by kubelet's own metrics on 10250.

1. burst: N static pods of one container written at once; pod start p50/p99 from kubelet's
   metrics: kubelet_pod_start_duration_seconds (first seen -> Running, the target's measure),
   kubelet_runtime_operations_duration_seconds (run_podsandbox, create/start_container),
   kubelet_pod_start_sli_duration_seconds and kubelet_run_podsandbox_duration_seconds (both
   reported, neither usable here: see _METRIC_NOTES), and when this process saw each pod
   Running in /pods;
2. hold: the node filled to 110 pods, idle for two minutes while kubelet relists them (PLEG
   every second, Status, stats, log manager); cri-shim's CPU seconds per minute and RSS over
   that window, and the relist RPCs' latency.

Beside the burst, the same pods through Docker alone (bench.docker_floor): on a 2-core machine
Docker's own work is most of the figure.

Targets (issue 8): burst p99 pod start <= 5 s; cri-shim <= 5 % of one core and <= 150 MB RSS
with 110 idle pods."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

from bench.bench_shim import ShimProcess
from bench.docker_floor import docker_burst
from bench.hostnet import INFRA_IMAGE, BenchNetwork, force_cleanup, leftovers
from bench.procmem import (
    CpuTable,
    cpu_between,
    cpu_of,
    cpu_table,
    descendants,
    machine_busy_now,
    memory_of,
    process_table,
    vm_rss_kib,
)
from bench.stats import percentile
from cri_api import api_pb2
from tests.kubelet import pods
from tests.kubelet.harness import (
    Kubelet,
    KubeletPorts,
    container_running,
    delete_chains,
    kubelet_binary,
    kubelet_chains,
    phase,
    port_free,
)
from tests.kubelet.metrics import Histogram, Sample, histogram, label_values, parse

log = logging.getLogger(__name__)

NAMESPACE = "crbench-kubelet"
START_P99_TARGET_S = 5.0
IDLE_CPU_TARGET_PERCENT = 5.0
IDLE_RSS_TARGET_MB = 150.0
START = "kubelet_pod_start_duration_seconds"
SLI = "kubelet_pod_start_sli_duration_seconds"
RUN_SANDBOX = "kubelet_run_podsandbox_duration_seconds"
RUNTIME_OPS = "kubelet_runtime_operations_duration_seconds"


_METRIC_NOTES = {
    SLI: "observed only when the status manager writes the pod's status to an API server"
    " (pod_startup_latency_tracker RecordStatusUpdated): never in standalone mode",
    RUN_SANDBOX: "kubelet 1.34 observes it in a `defer` whose argument is evaluated at once"
    " (kuberuntime/instrumented_services.go RunPodSandbox): always ~0;"
    " runtime_operations.run_podsandbox holds the real latency",
}
# kubelet's defaults, not the tests' quick ones: with syncFrequency 5 s kubelet would re-sync
# each of the 110 pods every 5 s, which is not an idle node.
BENCH_OVERRIDES: dict[str, Any] = {"syncFrequency": "1m", "fileCheckFrequency": "20s"}


@dataclass
class KubeletBenchConfig:
    burst: int = 30
    hold_pods: int = 110
    hold_s: float = 120.0
    log_level: str = "info"
    start_timeout_s: float = 600.0


def _quantiles(h: Histogram) -> dict[str, Any]:
    def rounded(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "count": int(h.count),
        "p50_s": rounded(h.quantile(0.50)),
        "p99_s": rounded(h.quantile(0.99)),
        "mean_s": rounded(h.mean()),
    }


def _ops(before: list[Sample], after: list[Sample], wanted: set[str] | None) -> dict[str, Any]:
    out = {}
    for op in label_values(after, RUNTIME_OPS, "operation_type"):
        if wanted is not None and op not in wanted:
            continue
        delta = histogram(after, RUNTIME_OPS, operation_type=op).minus(
            histogram(before, RUNTIME_OPS, operation_type=op)
        )
        if delta.count > 0:
            out[op] = _quantiles(delta)
    return out


def _status(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        return f.read()


def _pod_start(h: Histogram, pods: int) -> dict[str, Any]:
    """kubelet_pod_start_duration_seconds of `pods` pods. kubelet 1.34 observes it twice per
    pod (kubelet.go SyncPod: `!ok || Pending -> Running`): once at the first sync, when the
    pod has no status yet (~0 s), once when it turns Running. The Running ones are the upper
    half, so their p50/p99 are the whole histogram's quantiles at (n + q n) / 2n."""
    out: dict[str, Any] = {"observations": int(h.count)}
    if h.count == 2 * pods:

        def upper(q: float) -> float | None:
            v = h.quantile((pods + q * pods) / (2 * pods))
            return None if v is None else round(v, 3)

        out |= {"p50_s": upper(0.50), "p99_s": upper(0.99), "counted": "the Running half"}
    else:
        out |= {k: v for k, v in _quantiles(h).items() if k != "count"}
        out["counted"] = "every observation"
    return out


class _Run:
    def __init__(self, cfg: KubeletBenchConfig, binary: str, workdir: str) -> None:
        pid = os.getpid()
        self.cfg = cfg
        self.net = BenchNetwork(
            bridge=f"crbkub{pid % 10000}",
            subnet=f"10.206.{pid % 250}.0/24",
            data_dir=os.path.join(workdir, "ipam"),
            name="crbench-kubelet",
        )
        self.bin_dir = os.path.join(workdir, "cni-bin")
        subprocess.run(
            [sys.executable, "-m", "netplugins", "install", self.bin_dir],
            check=True,
            capture_output=True,
        )
        self.shim = ShimProcess(os.path.join(workdir, "shim"), [self.bin_dir], cfg.log_level)
        self.shim.write_conflist(self.net.conflist())
        self.kubelet = Kubelet(
            binary,
            self.shim.endpoint,
            os.path.join(workdir, "kubelet"),
            node_name="crbench-node",
            overrides={**BENCH_OVERRIDES, "maxPods": max(110, cfg.hold_pods)},
        )
        os.makedirs(self.kubelet.workdir, exist_ok=True)
        self.ids: set[str] = set()
        self.chains_before = kubelet_chains()

    def metrics(self) -> list[Sample]:
        return parse(self.kubelet.metrics())

    def add_pods(self, names: list[str]) -> dict[str, float]:
        """Write the manifests at once; seconds until this process saw each pod Running."""
        start = time.monotonic()
        for name in names:
            self.kubelet.add_manifest(pods.idle(name, NAMESPACE))
        seen: dict[str, float] = {}
        wanted = {self.kubelet.pod_name(n): n for n in names}
        deadline = start + self.cfg.start_timeout_s
        while len(seen) < len(names):
            if time.monotonic() > deadline:
                missing = sorted(set(names) - set(seen))
                raise TimeoutError(f"{len(missing)} pods not Running: {missing[:5]}")
            for pod in self.kubelet.pods():
                found = wanted.get(pod["metadata"]["name"])
                running = phase(pod) == "Running" and container_running(pod, "main")
                if found and found not in seen and running:
                    seen[found] = time.monotonic() - start
            time.sleep(0.2)
        return seen

    def shim_usage(self) -> tuple[float, float, float]:
        """(shim CPU s, its descendants' CPU s, shim VmRSS MiB) now."""
        assert self.shim.proc is not None
        pid = self.shim.proc.pid
        children = 0.0
        for child in descendants(pid, process_table()):
            with contextlib.suppress(OSError):
                children += cpu_of(child)
        rss = vm_rss_kib(_status(pid)) / 1024
        return cpu_of(pid), children, rss

    def cpu_during(self, before: CpuTable, busy_before: float, wall: float) -> dict[str, Any]:
        """Who used the machine's CPU since `before`: the shim, its warm worker (with the plugin
        children it reaped), kubelet, Docker's daemons, the rest by command name."""
        assert self.shim.proc is not None and self.kubelet.proc is not None
        after, busy = cpu_table(), machine_busy_now() - busy_before
        shim = self.shim.proc.pid
        names = {shim: "cri-shim (with the processes it reaped)", self.kubelet.proc.pid: "kubelet"}
        for child in descendants(shim, process_table()):
            names[child] = "cri-shim's descendants (warm CNI worker and plugins)"
        by_process = cpu_between(before, after, names)
        return {
            "window_s": round(wall, 2),
            "machine_busy_s": round(busy, 2),
            "machine_capacity_s": round(wall * (os.cpu_count() or 1), 2),
            "by_process_s": dict(list(by_process.items())[:12]),
        }

    def burst(self) -> dict[str, Any]:
        # The same pods through Docker alone, just before: the floor the burst stands on.
        floor = docker_burst(
            self.cfg.burst, INFRA_IMAGE, pods.TEST_IMAGE, ["/bin/sh", "-c", "exec sleep 100000"]
        )
        before = self.metrics()
        names = [f"burst-{i}" for i in range(self.cfg.burst)]
        cpu_before, busy_before = cpu_table(), machine_busy_now()
        wall = time.monotonic()
        seen = self.add_pods(names)
        wall = time.monotonic() - wall
        cpu_used = self.cpu_during(cpu_before, busy_before, wall)
        time.sleep(2)  # the SLI is observed by the status manager right after Running
        after = self.metrics()
        start = _pod_start(histogram(after, START).minus(histogram(before, START)), len(names))
        observed = sorted(seen.values())
        return {
            "pods": len(names),
            "wall_s": round(wall, 2),
            "pod_start": start,
            "pod_start_sli": _quantiles(histogram(after, SLI).minus(histogram(before, SLI))),
            "run_podsandbox_duration_metric": _quantiles(
                histogram(after, RUN_SANDBOX).minus(histogram(before, RUN_SANDBOX))
            ),
            "metric_notes": _METRIC_NOTES,
            "runtime_operations": _ops(
                before,
                after,
                {"run_podsandbox", "create_container", "start_container", "podsandbox_status"},
            ),
            "seen_running_by_this_process": {
                "p50_s": round(percentile(observed, 50), 2),
                "p99_s": round(percentile(observed, 99), 2),
                "max_s": round(observed[-1], 2),
            },
            "cpu_during_burst": cpu_used,
            "docker_only_floor": floor,
            "p99_over_docker_floor_p99": (
                round(start["p99_s"] / floor["p99_s"], 2)
                if start["p99_s"] is not None and floor["p99_s"]
                else None
            ),
            "target_p99_s": START_P99_TARGET_S,
            "meets_target": bool(
                start["p99_s"] is not None and start["p99_s"] <= START_P99_TARGET_S
            ),
        }

    def hold(self) -> dict[str, Any]:
        more = [f"hold-{i}" for i in range(self.cfg.hold_pods - self.cfg.burst)]
        fill = time.monotonic()
        self.add_pods(more)
        fill = time.monotonic() - fill
        time.sleep(10)  # let the start-up work (status, first stats) settle
        before = self.metrics()
        assert self.shim.proc is not None and self.kubelet.proc is not None
        kubelet_cpu0 = cpu_of(self.kubelet.proc.pid)
        cpu0, children0, _ = self.shim_usage()
        rss: list[float] = []
        start = time.monotonic()
        while time.monotonic() - start < self.cfg.hold_s:
            rss.append(self.shim_usage()[2])
            time.sleep(5)
        cpu1, children1, last_rss = self.shim_usage()
        rss.append(last_rss)
        elapsed = time.monotonic() - start
        kubelet_cpu = cpu_of(self.kubelet.proc.pid) - kubelet_cpu0
        after = self.metrics()
        running = sum(1 for p in self.kubelet.pods() if phase(p) == "Running")
        per_min = (cpu1 - cpu0) / elapsed * 60
        percent = 100 * (cpu1 - cpu0) / elapsed
        peak = max(rss)
        return {
            "pods": self.cfg.hold_pods,
            "running_at_end": running,
            "fill_wall_s": round(fill, 1),
            "window_s": round(elapsed, 1),
            "shim_cpu_s_per_min": round(per_min, 2),
            "shim_cpu_percent_of_one_core": round(percent, 2),
            "shim_descendants_cpu_s_per_min": round((children1 - children0) / elapsed * 60, 2),
            "shim_vm_rss_mib": {"max": round(peak, 1), "last": round(last_rss, 1)},
            "shim_memory_at_end": memory_of(self.shim.proc.pid),
            "kubelet_cpu_s_per_min": round(kubelet_cpu / elapsed * 60, 2),
            "relist_operations": _ops(before, after, None),
            "targets": {
                "cpu_percent": IDLE_CPU_TARGET_PERCENT,
                "rss_mb": IDLE_RSS_TARGET_MB,
            },
            "meets_target": bool(
                percent <= IDLE_CPU_TARGET_PERCENT and peak * 1.048576 <= IDLE_RSS_TARGET_MB
            ),
        }

    def teardown(self) -> dict[str, Any]:
        """kubelet first (it would restart what we remove), then every pod through the shim,
        in parallel, then whatever is left by hand."""
        with contextlib.suppress(Exception):
            self.kubelet.stop()
        removed = 0
        with contextlib.suppress(Exception):
            if self.shim.proc is not None and self.shim.proc.poll() is None:
                runtime = self.shim.runtime()
                sandboxes = runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=60)
                self.ids |= {p.id for p in sandboxes.items}

                def remove(sandbox_id: str) -> None:
                    with contextlib.suppress(grpc.RpcError):
                        runtime.RemovePodSandbox(
                            api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id),
                            timeout=120,
                        )

                with ThreadPoolExecutor(8) as pool:
                    removed = len(list(pool.map(remove, sorted(self.ids))))
        self.shim.terminate()
        force_cleanup(self.net, NAMESPACE, self.ids, self.shim.root)
        self.kubelet.cleanup_host()
        delete_chains(kubelet_chains() - self.chains_before)
        left = leftovers(self.net, NAMESPACE, self.ids, self.shim.root, bridge=True)
        return {"sandboxes_removed": removed, "clean_at_exit": left.empty()} | (
            {} if left.empty() else {"leftovers": left.as_dict()}
        )


def run(cfg: KubeletBenchConfig | None = None) -> dict[str, Any]:
    cfg = cfg or KubeletBenchConfig()
    binary = kubelet_binary(build=True)
    if binary is None:
        return {"skipped": "kubelet v1.34.4 could not be built (scripts/kubelet-tools.sh)"}
    busy = [p for p in KubeletPorts().all() if not port_free(p)]
    if busy:
        return {"skipped": f"kubelet's ports {busy} on 127.0.0.1 are in use"}
    workdir = tempfile.mkdtemp(prefix="crbkub-")
    report: dict[str, Any] = {
        "kubelet": binary,
        "node": "crbench-node",
        "config_overrides": BENCH_OVERRIDES,
        "cni_plugins": "netplugins (ours)",
    }
    bench = _Run(cfg, binary, workdir)
    try:
        bench.shim.start()
        bench.kubelet.start()
        report["burst"] = _section(bench.burst)
        report["hold_110_idle_pods"] = _section(bench.hold)
    finally:
        report["teardown"] = bench.teardown()
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def _section(fn: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = fn()
        return result
    except Exception as err:
        log.exception("kubelet benchmark section failed")
        return {"error": f"{type(err).__name__}: {err}"}


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.bench_kubelet`: this section alone."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m bench.bench_kubelet")
    p.add_argument("--burst", type=int, default=30)
    p.add_argument("--hold-pods", type=int, default=110)
    p.add_argument("--hold-s", type=float, default=120.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    cfg = KubeletBenchConfig(burst=args.burst, hold_pods=args.hold_pods, hold_s=args.hold_s)
    sys.stdout.write(json.dumps(run(cfg), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
