"""The gauges of what exists now, read from the shim's own state at scrape time.

A custom prometheus_client Collector: nothing has to keep a gauge in step with the stores
(a sandbox that goes NOTREADY because its infra container died is counted as such the next
time anyone looks). The sources are a small Protocol, so the collector is unit-tested with a
fake and `ContextSources` is the one adapter to a live shim.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cri_api import api_pb2
from shim.metrics.registry import PREFIX
from shim.sandbox.convert import sandbox_state

if TYPE_CHECKING:
    from shim.context import ShimContext

SANDBOX_STATES = ("ready", "notready")
CONTAINER_STATES = ("created", "running", "exited", "unknown")
EXECUTION_PATHS = ("warm", "fallback", "foreign")


@dataclass(frozen=True)
class WarmWorkerState:
    up: bool
    children: int  # the zygote's forked children, idle and busy
    busy: int  # calls being served by a child now
    executions: Mapping[str, int]  # warm / fallback / foreign, since start


class StateSources(Protocol):
    def sandbox_states(self) -> Mapping[str, int]: ...
    def container_states(self) -> Mapping[str, int]: ...
    def warm_worker(self) -> WarmWorkerState | None: ...
    def event_subscribers(self) -> int: ...


class StateCollector(Collector):
    def __init__(self, sources: StateSources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        yield _by_label(
            "sandboxes",
            "Pod sandboxes the shim knows, by CRI state.",
            "state",
            SANDBOX_STATES,
            self._sources.sandbox_states(),
        )
        yield _by_label(
            "containers",
            "Containers the shim knows, by CRI state.",
            "state",
            CONTAINER_STATES,
            self._sources.container_states(),
        )
        yield _gauge(
            "container_events_subscribers",
            "GetContainerEvents streams open now (kubelet's Evented PLEG holds one).",
            self._sources.event_subscribers(),
        )

        warm = self._sources.warm_worker()
        if warm is None:  # --no-cni-warm-plugins: no worker, no families
            return
        yield _gauge("cni_warm_worker_up", "1 while the netplugins warm worker runs.", int(warm.up))
        yield _gauge(
            "cni_warm_worker_children",
            "Children of the warm worker now (pre-forked idle ones plus busy ones).",
            warm.children,
        )
        yield _gauge(
            "cni_warm_worker_busy_children",
            "Warm worker children serving a plugin call.",
            warm.busy,
        )
        yield _by_label(
            "cni_plugin_executions",
            "How plugin calls ran: warm (in a worker child), fallback (one of ours exec'd"
            " because the worker was unusable), foreign (another binary, exec'd).",
            "path",
            EXECUTION_PATHS,
            warm.executions,
            counter=True,
        )


def _gauge(name: str, documentation: str, value: int) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(f"{PREFIX}_{name}", documentation)
    gauge.add_metric([], value)
    return gauge


def _by_label(
    name: str,
    documentation: str,
    label: str,
    values: tuple[str, ...],
    counted: Mapping[str, int],
    counter: bool = False,
) -> Metric:
    """One sample for each of `values` (0 where `counted` has none), so a state that is empty
    now is exported as 0 rather than disappearing from the scrape."""
    family_type = CounterMetricFamily if counter else GaugeMetricFamily
    family = family_type(f"{PREFIX}_{name}", documentation, labels=[label])
    for value in values:
        family.add_metric([value], counted.get(value, 0))
    return family


def child_count(pid: int) -> int:
    """How many children `pid` has, from /proc (every thread's list: the zygote forks from
    its main thread, but a child list is kept per task)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += len(f.read().split())
        except OSError:
            continue
    return total


class ContextSources:
    """StateSources over a running shim's context."""

    def __init__(self, ctx: ShimContext) -> None:
        self._ctx = ctx

    def sandbox_states(self) -> Mapping[str, int]:
        running = self._ctx.liveness.running()
        counted: Counter[str] = Counter()
        for record in self._ctx.store.all():
            alive = True if running is None else record.id in running
            ready = sandbox_state(record, alive) == api_pb2.SANDBOX_READY
            counted["ready" if ready else "notready"] += 1
        return counted

    def container_states(self) -> Mapping[str, int]:
        return Counter(r.state.value for r in self._ctx.containers.all())

    def warm_worker(self) -> WarmWorkerState | None:
        executor = self._ctx.network.warm_executor()
        if executor is None:
            return None
        pid = executor.worker_pid
        return WarmWorkerState(
            up=pid is not None,
            children=child_count(pid) if pid is not None else 0,
            busy=executor.busy,
            executions=dict(executor.counts),
        )

    def event_subscribers(self) -> int:
        return self._ctx.events.subscribers()
