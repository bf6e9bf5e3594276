"""Timing the three verbs for any pod driver (the shim through gRPC, or the floor), one pod at
a time and at a fixed concurrency. Only the call itself is timed: a call waiting for a free
worker is not yet running, so per-call latency excludes queueing, and wall time includes it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from bench.stats import summarize_ms

log = logging.getLogger(__name__)

VERBS = ("run", "stop", "remove")
T = TypeVar("T")


class PodDriver(Protocol):
    label: str
    ids: set[str]

    def run(self, name: str) -> str: ...

    def stop(self, pod_id: str) -> None: ...

    def remove(self, pod_id: str) -> None: ...

    def pod_ip(self, pod_id: str) -> str: ...


@dataclass
class Samples:
    """Durations in seconds per verb, and wall times of whole concurrent phases."""

    run: list[float] = field(default_factory=list)
    stop: list[float] = field(default_factory=list)
    remove: list[float] = field(default_factory=list)
    wall: dict[str, list[float]] = field(default_factory=dict)

    def of(self, verb: str) -> list[float]:
        samples: list[float] = getattr(self, verb)
        return samples

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {verb: summarize_ms(self.of(verb)) for verb in VERBS}
        if self.wall:
            # One wall time per round of the concurrent phase.
            out["wall_s"] = {
                verb: [round(s, 3) for s in walls] for verb, walls in self.wall.items()
            }
        return out


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _timed_call(call: Callable[[str], None]) -> Callable[[str], tuple[None, float]]:
    return lambda pod_id: _timed(partial(call, pod_id))


def one_at_a_time(driver: PodDriver, names: Sequence[str], samples: Samples | None) -> None:
    """Run every pod, then stop every pod, then remove every pod, one call at a time.
    `samples` None is a warm-up: the calls run but are not recorded."""
    ids: list[str] = []
    for name in names:
        pod_id, took = _timed(partial(driver.run, name))
        ids.append(pod_id)
        if samples is not None:
            samples.run.append(took)
    for verb in ("stop", "remove"):
        call: Callable[[str], None] = getattr(driver, verb)
        for pod_id in ids:
            _, took = _timed(partial(call, pod_id))
            if samples is not None:
                samples.of(verb).append(took)
    log.info("%s: %d pods one at a time done", driver.label, len(names))


def concurrently(driver: PodDriver, names: Sequence[str], workers: int, samples: Samples) -> None:
    """Each verb for every pod through a pool of `workers` threads, verb after verb (all runs,
    then all stops, then all removes), as kubelet's pod workers would issue them."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=driver.label) as pool:
        start = time.perf_counter()
        runs = list(pool.map(lambda n: _timed(partial(driver.run, n)), names))
        samples.wall.setdefault("run", []).append(time.perf_counter() - start)
        ids = [pod_id for pod_id, _ in runs]
        samples.run.extend(took for _, took in runs)
        for verb in ("stop", "remove"):
            call: Callable[[str], None] = getattr(driver, verb)
            start = time.perf_counter()
            took_all = [took for _, took in pool.map(_timed_call(call), ids)]
            samples.wall.setdefault(verb, []).append(time.perf_counter() - start)
            samples.of(verb).extend(took_all)
    log.info("%s: %d pods at concurrency %d done", driver.label, len(names), workers)
