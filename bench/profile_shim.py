"""`python -m bench.profile_shim`: where RunPodSandbox / StopPodSandbox / RemovePodSandbox spend
their time, step by step, next to the floor's steps. A separate run from `python -m bench`: the
shim is built in this process (the same `build_context` and `build_server` as `cri-shim`), its
boundaries are wrapped with clocks (every Docker call, checkpoint write, netns pin, CNI plugin
exec, CNI cache access), and pods are driven through gRPC on a private socket, one at a time,
alternating with floor pods whose Docker calls and plugin execs are clocked the same way.

For each verb it reports the median per call of: the client-side latency, the time inside the
verb function, each clocked step (summed over the call, with how many times it ran), what the
shim spends between steps (its own Python), and what gRPC adds (client latency - verb time).
Calls are sequential, so one global recorder is enough: the clocks run in the server's threads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import grpc

import shim.sandbox.run
import shim.sandbox.stop
import shim.servicer
from bench.bench_shim import ShimPods
from bench.floor import FloorPods, probe_oom_score_adj
from bench.hostnet import REFERENCE_PLUGINS, BenchNetwork, force_cleanup, leftovers
from bench.measure import PodDriver
from cri_api import api_pb2_grpc
from shim.config import ShimConfig
from shim.context import ShimContext
from shim.main import build_context, plugin_executor
from shim.server import build_server

log = logging.getLogger("bench.profile")

VERB_FUNCTIONS = {
    "run": "run_pod_sandbox",
    "stop": "stop_pod_sandbox",
    "remove": "remove_pod_sandbox",
}


class Recorder:
    """Durations of named steps within the current call."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.steps: list[tuple[str, float]] = []

    def reset(self) -> list[tuple[str, float]]:
        with self._guard:
            steps, self.steps = self.steps, []
        return steps

    def add(self, step: str, seconds: float) -> None:
        with self._guard:
            self.steps.append((step, seconds))

    def clocked(self, step: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            name = step(*args, **kwargs) if callable(step) else step
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - start)

        return wrapper

    def wrap(self, obj: object, attr: str, step: str | Callable[..., str]) -> None:
        setattr(obj, attr, self.clocked(step, getattr(obj, attr)))


def _plugin_step(path: str, env: Any, *_: Any, **__: Any) -> str:
    return f"cni {env.get('CNI_COMMAND', '?')} {os.path.basename(path)}"


def instrument_shim(rec: Recorder, ctx: ShimContext) -> None:
    for attr in ("create", "start", "inspect", "stop", "remove"):
        rec.wrap(ctx.infra, attr, f"docker {attr}")
    for attr in ("save", "delete"):
        rec.wrap(ctx.store, attr, f"checkpoint {attr}")
    rec.wrap(ctx.network, "current", "choose network (conf dir stat)")
    cni = getattr(ctx.network, "_cni", None)
    if cni is not None:
        rec.wrap(cni.executor, "run", _plugin_step)
        cache = getattr(cni, "_cache", None)
        for attr in ("write", "read", "delete"):
            if cache is not None and hasattr(cache, attr):
                rec.wrap(cache, attr, f"cni cache {attr}")
    # Names imported into the verb modules are the ones the verbs call.
    for module, names in (
        (shim.sandbox.run, ("pin", "same_namespace", "unpin")),
        (shim.sandbox.stop, ("unpin",)),
    ):
        for name in names:
            if hasattr(module, name):
                rec.wrap(module, name, f"netns {name}")
    for verb, fn in VERB_FUNCTIONS.items():
        rec.wrap(shim.servicer, fn, f"VERB {verb}")


def instrument_floor(rec: Recorder, floor: FloorPods) -> None:
    api = floor._api
    for attr, step in (
        ("create_container", "docker create"),
        ("start", "docker start"),
        ("inspect_container", "docker inspect"),
        ("stop", "docker stop"),
        ("remove_container", "docker remove"),
    ):
        rec.wrap(api, attr, step)
    rec.wrap(floor, "_exec", lambda command, plugin_type, *_: f"cni {command} {plugin_type}")


def per_call(steps: list[tuple[str, float]]) -> tuple[dict[str, float], dict[str, int]]:
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for name, seconds in steps:
        total[name] += seconds
        count[name] += 1
    return total, count


def breakdown(calls: list[tuple[float, list[tuple[str, float]]]]) -> dict[str, Any]:
    """Median ms per step over the calls (a step absent from a call counts 0 there)."""
    tables = [per_call(steps) for _, steps in calls]
    names = sorted({n for total, _ in tables for n in total})
    out: dict[str, Any] = {"client_ms": _median_ms([c for c, _ in calls])}
    verb = [total.get(n, 0.0) for total, _ in tables for n in total if n.startswith("VERB ")]
    if verb:
        out["inside_verb_ms"] = _median_ms(verb)
        out["grpc_and_servicer_ms"] = _median_ms(
            [c - v for (c, _), v in zip(calls, verb, strict=True)]
        )
    steps: dict[str, Any] = {}
    for name in names:
        if name.startswith("VERB "):
            continue
        steps[name] = {
            "ms": _median_ms([total.get(name, 0.0) for total, _ in tables]),
            "times": max(count.get(name, 0) for _, count in tables),
        }
    out["steps"] = steps
    clocked = [sum(s for n, s in total.items() if not n.startswith("VERB ")) for total, _ in tables]
    out["clocked_sum_ms"] = _median_ms(clocked)
    if verb:
        out["unclocked_in_verb_ms"] = _median_ms(
            [v - c for v, c in zip(verb, clocked, strict=True)]
        )
    return out


def compare(shim_side: dict[str, Any], floor_side: dict[str, Any]) -> dict[str, Any]:
    """Per step: the shim's median, the floor's, and what the shim spends beyond it. Rows the
    floor has no counterpart for are the shim's own work (checkpoints, image check, netns pin,
    gRPC)."""
    rows: dict[str, Any] = {}
    for name in sorted({*shim_side["steps"], *floor_side["steps"]}):
        mine = shim_side["steps"].get(name, {}).get("ms", 0.0)
        theirs = floor_side["steps"].get(name, {}).get("ms", 0.0)
        rows[name] = {"shim_ms": mine, "floor_ms": theirs, "extra_ms": round(mine - theirs, 2)}
    for name in ("grpc_and_servicer_ms", "unclocked_in_verb_ms"):
        if name in shim_side:
            rows[name.removesuffix("_ms")] = {
                "shim_ms": shim_side[name],
                "floor_ms": 0.0,
                "extra_ms": shim_side[name],
            }
    return {
        "client_ms": {"shim": shim_side["client_ms"], "floor": floor_side["client_ms"]},
        "rows": dict(sorted(rows.items(), key=lambda kv: -abs(float(kv[1]["extra_ms"])))),
    }


def _median_ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000, 2) if seconds else 0.0


@contextlib.contextmanager
def in_process_shim(workdir: str, net: BenchNetwork) -> Iterator[tuple[ShimContext, str]]:
    config = ShimConfig(
        endpoint=f"unix://{os.path.join(workdir, 'cri.sock')}",
        cni_conf_dir=os.path.join(workdir, "net.d"),
        cni_bin_dirs=(REFERENCE_PLUGINS,),
        cni_cache_dir=os.path.join(workdir, "cache"),
        root_directory=os.path.join(workdir, "root"),
        cni_plugin_timeout=60.0,
    )
    os.makedirs(config.cni_conf_dir)
    with open(os.path.join(config.cni_conf_dir, "10-bench.conflist"), "w") as f:
        json.dump(net.conflist(), f)
    executor = plugin_executor(config)
    try:
        ctx = build_context(config, executor)
        # A fresh root directory: nothing to recover, nothing to garbage-collect.
        ctx.recovered.set()
        ctx.collected.set()
        server = build_server(ctx)
        try:
            yield ctx, config.endpoint
        finally:
            server.stop(grace=5).wait()
            ctx.logs.close()
    finally:
        if executor is not None:
            executor.stop()


def profile(pods: int, warmup: int) -> dict[str, Any]:
    pid = os.getpid()
    pod_namespace = f"crbench-prof-{pid}"
    workdir = tempfile.mkdtemp(prefix="crbprof-")
    net = BenchNetwork(
        bridge=f"crbprof{pid % 100000}",
        subnet=f"10.204.{pid % 250 + 1}.0/24",
        data_dir=os.path.join(workdir, "ipam"),
    )
    rec = Recorder()
    ids: set[str] = set()
    shim_root = os.path.join(workdir, "shim", "root")
    try:
        with in_process_shim(os.path.join(workdir, "shim"), net) as (ctx, endpoint):
            instrument_shim(rec, ctx)
            channel = grpc.insecure_channel(endpoint)
            shim_pods = ShimPods(_Channelled(channel), pod_namespace)
            floor = FloorPods(net, pod_namespace, REFERENCE_PLUGINS, probe_oom_score_adj())
            instrument_floor(rec, floor)
            drivers: tuple[PodDriver, PodDriver] = (shim_pods, floor)
            calls: dict[str, dict[str, list[tuple[float, list[tuple[str, float]]]]]] = {
                d.label: {v: [] for v in VERB_FUNCTIONS} for d in drivers
            }
            try:
                for i in range(warmup + pods):
                    for driver in drivers if i % 2 == 0 else drivers[::-1]:
                        _lifecycle(driver, f"{driver.label}-p{i}", rec, calls, i >= warmup)
            finally:
                ids |= shim_pods.ids | floor.ids
                with contextlib.suppress(Exception):
                    shim_pods.remove_all()
                channel.close()
        left = leftovers(net, pod_namespace, ids, shim_root)
        shim_side = {v: breakdown(c) for v, c in calls["shim"].items()}
        floor_side = {v: breakdown(c) for v, c in calls["floor"].items()}
        return {
            "pods": pods,
            "cpu_count": os.cpu_count(),
            "load_avg": [round(x, 2) for x in os.getloadavg()],
            "comparison": {v: compare(shim_side[v], floor_side[v]) for v in VERB_FUNCTIONS},
            "shim": shim_side,
            "floor": floor_side,
            "clean_after_teardown": left.empty(),
        }
    finally:
        force_cleanup(net, pod_namespace, ids, shim_root)
        shutil.rmtree(workdir, ignore_errors=True)


class _Channelled:
    """What ShimPods needs of a ShimProcess: a RuntimeService stub."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel

    def runtime(self) -> api_pb2_grpc.RuntimeServiceStub:
        return api_pb2_grpc.RuntimeServiceStub(self._channel)


def _lifecycle(
    driver: PodDriver,
    name: str,
    rec: Recorder,
    calls: dict[str, dict[str, list[tuple[float, list[tuple[str, float]]]]]],
    keep: bool,
) -> None:
    rec.reset()
    start = time.perf_counter()
    pod_id = driver.run(name)
    record = [("run", time.perf_counter() - start, rec.reset())]
    for verb in ("stop", "remove"):
        start = time.perf_counter()
        getattr(driver, verb)(pod_id)
        record.append((verb, time.perf_counter() - start, rec.reset()))
    if keep:
        for verb, took, steps in record:
            calls[driver.label][verb].append((took, steps))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_shim", description=__doc__)
    p.add_argument("--pods", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    result = profile(args.pods, args.warmup)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
