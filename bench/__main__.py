"""`python -m bench` (`make bench`): one JSON document on stdout, logs on stderr.

- shim: RunPodSandbox / StopPodSandbox / RemovePodSandbox latency through gRPC, one pod at a
  time and at a fixed concurrency;
- floor: the same work done directly (docker + the CNI chain exec'd from here), in the same run,
  in blocks alternating with the shim's (shim first, then floor first, ...) so that drift of the
  machine (other jobs, page cache, Docker's state) falls on both alike;
- ratios: shim p50 / floor p50 per verb; the target is RunPodSandbox within 1.10x;
- plugins: what `bench.bench_plugins.run()` reports, when that module is present;
- containers: the container half on a private shim of its own (`bench.bench_containers`):
  CreateContainer+StartContainer against docker create+start, relist latency and the shim's
  memory with 110 pods of 2 containers, CRI log throughput and lines lost;
- kubelet: a real kubelet v1.34 on a private shim (`bench.bench_kubelet`): pod start p50/p99
  of a 30-pod burst from kubelet's own metrics, the shim's CPU and RSS with 110 idle pods;
- load: Status / ListPodSandbox p50/p99 while 30 RunPodSandbox calls are stuck in flight, and
  RunPodSandbox pods/s at --concurrency on our plugins against the reference ones
  (`bench.bench_load`);
- overlay: pod-to-pod throughput and UDP RTT across nodes (VXLAN, host-gw) against inside one
  node, and the time from a new node's lease in etcd to traffic reaching it, on the netns
  simulation of tests/overlay (`bench.bench_overlay`);
- streaming: ExecSync of `true` against a streaming exec over SPDY (p50/p99), and port-forward
  MB/s through `crictl port-forward` (1 connection and 8) against the pod IP directly
  (`bench.bench_streaming`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import ipaddress
import json
import logging
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from bench.bench_containers import ContainerBenchConfig
from bench.bench_containers import run as run_containers
from bench.bench_kubelet import KubeletBenchConfig
from bench.bench_kubelet import run as run_kubelet
from bench.bench_load import LoadBenchConfig
from bench.bench_load import run as run_load
from bench.bench_overlay import run as run_overlay
from bench.bench_shim import ShimPods, ShimProcess
from bench.bench_streaming import StreamingBenchConfig
from bench.bench_streaming import run as run_streaming
from bench.floor import FloorPods, probe_oom_score_adj
from bench.hostnet import (
    DOCKER,
    INFRA_IMAGE,
    REFERENCE_PLUGINS,
    BenchNetwork,
    force_cleanup,
    leftovers,
)
from bench.measure import VERBS, PodDriver, Samples, concurrently, one_at_a_time
from bench.stats import paired_difference_p50, percentile, ratio

log = logging.getLogger("bench")

RUN_TARGET = 1.10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--pods", type=int, default=30, help="pods per driver and phase")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument(
        "--concurrent-rounds",
        type=int,
        default=2,
        help="rounds of the concurrent phase per driver, in ABBA order (each: --pods pods)",
    )
    p.add_argument(
        "--block",
        type=int,
        default=1,
        help="pods per alternating block (1: shim and floor pods alternate)",
    )
    p.add_argument("--warmup", type=int, default=3, help="unrecorded pods per driver first")
    p.add_argument("--shim-log-level", default="info", choices=["debug", "info", "warning"])
    p.add_argument("--keep-shim-log", metavar="PATH", help="copy the shim's log here at the end")
    p.add_argument("--skip-plugins", action="store_true", help="do not run bench.bench_plugins")
    p.add_argument("--skip-containers", action="store_true", help="no container benchmarks")
    p.add_argument("--skip-kubelet", action="store_true", help="no kubelet benchmark")
    p.add_argument("--skip-load", action="store_true", help="no status-under-load benchmark")
    p.add_argument("--skip-overlay", action="store_true", help="no cross-node overlay benchmark")
    p.add_argument("--skip-streaming", action="store_true", help="no exec/port-forward benchmark")
    p.add_argument("--container-samples", type=int, default=30, help="CreateContainer+Start")
    p.add_argument("--relist-pods", type=int, default=110, help="pods (2 containers each)")
    p.add_argument("--relists", type=int, default=200)
    p.add_argument("--log-lines", type=int, default=2_000_000, help="96-byte lines logged")
    return p.parse_args(argv)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def stdout_kept_for_report() -> Iterator[int]:
    """Point fd 1 at stderr while the benchmark runs, so that nothing it starts (plugins,
    helpers, a stray print) can mix into the JSON; yields the real stdout's fd."""
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    try:
        yield real
    finally:
        sys.stdout.flush()
        os.dup2(real, 1)
        os.close(real)


def preflight() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("the benchmark needs root (docker, network namespaces, iptables)")
    if not os.path.exists(os.path.join(REFERENCE_PLUGINS, "bridge")):
        raise RuntimeError(f"the reference CNI plugins are missing from {REFERENCE_PLUGINS}")
    import subprocess

    probe = subprocess.run(
        [DOCKER, "image", "inspect", INFRA_IMAGE], capture_output=True, check=False, timeout=60
    )
    if probe.returncode != 0:
        raise RuntimeError(f"infra image {INFRA_IMAGE} is missing: run `make pause-image`")


def pod_names(label: str, phase: str, count: int) -> list[str]:
    return [f"{label}-{phase}-{i}" for i in range(count)]


def blocks(total: int, size: int) -> list[int]:
    full, rest = divmod(total, size)
    return [size] * full + ([rest] if rest else [])


def lifecycle_benchmark(args: argparse.Namespace, report: dict[str, Any]) -> None:
    pid = os.getpid()
    pod_namespace = f"crbench-{pid}"
    workdir = tempfile.mkdtemp(prefix="crbench-")
    net = BenchNetwork(
        bridge=f"crbench{pid % 100000}",
        subnet=f"10.204.{pid % 250 + 1}.0/24",
        data_dir=os.path.join(workdir, "ipam"),
    )
    shim = ShimProcess(os.path.join(workdir, "shim"), [REFERENCE_PLUGINS], args.shim_log_level)
    shim.write_conflist(net.conflist())
    shim_pods: ShimPods | None = None
    floor: FloorPods | None = None
    report["metadata"]["network"] = {"bridge": net.bridge, "subnet": net.subnet}
    report["metadata"]["conflist"] = net.conflist()
    try:
        preflight()
        shim.start()
        shim_pods = ShimPods(shim, pod_namespace)
        floor = FloorPods(net, pod_namespace, REFERENCE_PLUGINS, probe_oom_score_adj())
        drivers: tuple[PodDriver, PodDriver] = (shim_pods, floor)

        report["metadata"]["sanity_pod_ips"] = {
            d.label: check_pod_gets_address(d, net) for d in drivers
        }
        # Warm-up: the shim asks every plugin VERSION once, Docker and the page cache settle.
        for driver in drivers:
            one_at_a_time(driver, pod_names(driver.label, "warm", args.warmup), None)

        sequential = {d.label: Samples() for d in drivers}
        for i, size in enumerate(blocks(args.pods, args.block)):
            order = drivers if i % 2 == 0 else drivers[::-1]
            for driver in order:
                names = pod_names(driver.label, f"seq{i}", size)
                one_at_a_time(driver, names, sequential[driver.label])

        concurrent = {d.label: Samples() for d in drivers}
        for r in range(args.concurrent_rounds):
            for driver in drivers if r % 2 == 0 else drivers[::-1]:
                names = pod_names(driver.label, f"conc{r}", args.pods)
                concurrently(driver, names, args.concurrency, concurrent[driver.label])

        for d in drivers:
            report[d.label] = {
                "one_at_a_time": sequential[d.label].summary(),
                f"concurrency_{args.concurrency}": concurrent[d.label].summary(),
            }
        report["ratios"] = ratios(sequential, concurrent, args.concurrency)
        left = leftovers(net, pod_namespace, shim_pods.ids | floor.ids, shim.root)
        report["host"] = {
            "clean_after_teardown": left.empty() and not _cache_files(shim),
            "leftovers_after_teardown": {**left.as_dict(), "cni_cache": _cache_files(shim)},
        }
    finally:
        ids: set[str] = set()
        if shim_pods is not None:
            with contextlib.suppress(Exception):
                if shim.proc is not None and shim.proc.poll() is None:
                    shim_pods.remove_all()
            ids |= shim_pods.ids
        if floor is not None:
            ids |= floor.ids
        shim.terminate()
        if args.keep_shim_log:
            with contextlib.suppress(OSError):
                shutil.copyfile(shim.log_path, args.keep_shim_log)
        force_cleanup(net, pod_namespace, ids, shim.root)
        shutil.rmtree(workdir, ignore_errors=True)
        final = leftovers(net, pod_namespace, ids, shim.root, bridge=True)
        if os.path.exists(workdir):
            final.mounts.append(f"{workdir} could not be removed")
        report.setdefault("host", {})["clean_at_exit"] = final.empty()
        if not final.empty():
            report["host"]["leftovers_at_exit"] = final.as_dict()
            log.error("the host still holds benchmark leftovers: %s", final.as_dict())


def check_pod_gets_address(driver: PodDriver, net: BenchNetwork) -> str:
    """Before timing anything: one pod through the whole lifecycle must get an address in the
    network's subnet, or the figures would time something other than a pod with a network."""
    pod_id = driver.run(f"{driver.label}-sanity")
    try:
        ip = driver.pod_ip(pod_id)
    finally:
        driver.stop(pod_id)
        driver.remove(pod_id)
    if not ip or ipaddress.ip_address(ip) not in ipaddress.ip_network(net.subnet):
        raise RuntimeError(f"{driver.label} pod {pod_id} got address {ip!r}, not in {net.subnet}")
    return ip


def _cache_files(shim: ShimProcess) -> list[str]:
    results = os.path.join(shim.cache_dir, "results")
    return sorted(os.listdir(results)) if os.path.isdir(results) else []


def ratios(
    sequential: dict[str, Samples], concurrent: dict[str, Samples], concurrency: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for verb in VERBS:
        shim_p50 = percentile(sequential["shim"].of(verb), 50) * 1000
        floor_p50 = percentile(sequential["floor"].of(verb), 50) * 1000
        entry: dict[str, Any] = {
            "shim_p50_ms": round(shim_p50, 2),
            "floor_p50_ms": round(floor_p50, 2),
            "overhead_ms": round(shim_p50 - floor_p50, 2),
            "ratio": ratio(shim_p50, floor_p50),
            # Pods alternate shim/floor, so the i-th of each ran back to back: the median of
            # their differences is the overhead with the machine's drift paired away.
            "paired_overhead_p50_ms": round(
                paired_difference_p50(sequential["shim"].of(verb), sequential["floor"].of(verb))
                * 1000,
                2,
            ),
        }
        if verb == "run":
            entry["target"] = RUN_TARGET
            entry["meets_target"] = bool(entry["ratio"] <= RUN_TARGET)
        out[verb] = entry
    out[f"concurrency_{concurrency}"] = {
        f"{verb}_p50": ratio(
            percentile(concurrent["shim"].of(verb), 50),
            percentile(concurrent["floor"].of(verb), 50),
        )
        for verb in VERBS
    } | {
        f"{verb}_wall": ratio(
            sum(concurrent["shim"].wall.get(verb, [])), sum(concurrent["floor"].wall.get(verb, []))
        )
        for verb in VERBS
    }
    return out


def plugins_section() -> dict[str, Any]:
    """The netplugins chain benchmark, owned by its own module; absent is not an error."""
    try:
        module = importlib.import_module("bench.bench_plugins")
    except ImportError as err:
        return {"skipped": f"bench.bench_plugins is not available: {err}"}
    run: Callable[[], dict[str, Any]] = module.run
    try:
        return run()
    except Exception as err:
        log.error("bench.bench_plugins.run() failed:\n%s", traceback.format_exc())
        return {"error": f"bench.bench_plugins.run() failed: {type(err).__name__}: {err}"}


def containers_section(args: argparse.Namespace) -> dict[str, Any]:
    cfg = ContainerBenchConfig(
        samples=args.container_samples,
        warmup=args.warmup,
        relist_pods=args.relist_pods,
        relists=args.relists,
        setup_concurrency=args.concurrency,
        log_lines=args.log_lines,
        log_level=args.shim_log_level,
    )
    try:
        return run_containers(cfg)
    except Exception as err:
        log.error("bench.bench_containers.run() failed:\n%s", traceback.format_exc())
        return {"error": f"bench.bench_containers.run() failed: {type(err).__name__}: {err}"}


def kubelet_section(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return run_kubelet(KubeletBenchConfig(log_level=args.shim_log_level))
    except Exception as err:
        log.error("bench.bench_kubelet.run() failed:\n%s", traceback.format_exc())
        return {"error": f"bench.bench_kubelet.run() failed: {type(err).__name__}: {err}"}


def load_section(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return run_load(
            LoadBenchConfig(concurrency=args.concurrency, log_level=args.shim_log_level)
        )
    except Exception as err:
        log.error("bench.bench_load.run() failed:\n%s", traceback.format_exc())
        return {"error": f"bench.bench_load.run() failed: {type(err).__name__}: {err}"}


def streaming_section(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return run_streaming(StreamingBenchConfig(log_level=args.shim_log_level))
    except Exception as err:
        log.error("bench.bench_streaming.run() failed:\n%s", traceback.format_exc())
        return {"error": f"bench.bench_streaming.run() failed: {type(err).__name__}: {err}"}


def overlay_section() -> dict[str, Any]:
    try:
        return run_overlay()
    except Exception as err:
        log.error("bench.bench_overlay.run() failed:\n%s", traceback.format_exc())
        return {"error": f"bench.bench_overlay.run() failed: {type(err).__name__}: {err}"}


def _finite(value: Any) -> Any:
    """JSON has no NaN: a statistic without samples becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _terminated(signum: int, _frame: object) -> None:
    # SIGTERM (make interrupted, a CI timeout) must still run the clean-up in `finally`.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    started = time.monotonic()
    report: dict[str, Any] = {
        "metadata": {
            "pods": args.pods,
            "concurrency": args.concurrency,
            "concurrent_rounds": args.concurrent_rounds,
            "warmup_pods": args.warmup,
            "block_size": args.block,
            "order": "blocks and concurrent rounds alternate shim/floor first (ABBA...)",
            "host_ports_per_pod": 0,
            "cpu_count": os.cpu_count(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
            "kernel": platform.release(),
            "python": platform.python_version(),
            "shim_log_level": args.shim_log_level,
            "cni_plugins": REFERENCE_PLUGINS,
            "infra_image": INFRA_IMAGE,
            "started_at": now(),
        }
    }
    failed = False
    with stdout_kept_for_report() as real_stdout:
        try:
            lifecycle_benchmark(args, report)
        except Exception as err:
            failed = True
            log.error("benchmark failed:\n%s", traceback.format_exc())
            report["error"] = f"{type(err).__name__}: {err}"
        report["plugins"] = (
            {"skipped": "--skip-plugins given"} if args.skip_plugins else plugins_section()
        )
        report["containers"] = (
            {"skipped": "--skip-containers given"}
            if args.skip_containers
            else containers_section(args)
        )
        report["kubelet"] = (
            {"skipped": "--skip-kubelet given"} if args.skip_kubelet else kubelet_section(args)
        )
        report["load"] = {"skipped": "--skip-load given"} if args.skip_load else load_section(args)
        report["overlay"] = (
            {"skipped": "--skip-overlay given"} if args.skip_overlay else overlay_section()
        )
        report["streaming"] = (
            {"skipped": "--skip-streaming given"}
            if args.skip_streaming
            else streaming_section(args)
        )
        report["metadata"]["finished_at"] = now()
        report["metadata"]["duration_s"] = round(time.monotonic() - started, 1)
        text = json.dumps(_finite(report), indent=2, allow_nan=False) + "\n"
        os.write(real_stdout, text.encode())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
