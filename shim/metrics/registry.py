"""Every metric family cri-shim exports, on a registry of its own.

Names follow containerd's CRI metrics: a `cri_shim_` prefix, `_seconds` for durations,
`_total` for counters. The registry is not prometheus_client's global one, so two shims (or
two tests) in one process never share a family; `ShimMetrics` is cheap, and made whether or
not `--metrics-address` serves it, so the code that observes never asks whether it should.
The gauges of things that exist (sandboxes, containers, warm children, subscribers) are read
at scrape time by `shim.metrics.collector`, never kept up to date by hand.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

PREFIX = "cri_shim"

# From 1 ms (a ListContainers answered from memory) to a minute (a pod start behind a pull).
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A warm plugin answers in a few ms, an exec'd one in ~150 ms, a hung one at the timeout.
CNI_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
DOCKER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# How far the CRI log file is behind the container's output.
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ShimMetrics:
    """The families cri-shim observes as things happen; one instance per shim."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.grpc_duration = Histogram(
            f"{PREFIX}_grpc_request_duration_seconds",
            "Time to answer a unary CRI call, by service and method, whatever its outcome.",
            ["service", "method"],
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.grpc_errors = Counter(
            f"{PREFIX}_grpc_request_errors",
            "CRI calls (unary and streams) that ended with a status other than OK, by code.",
            ["service", "method", "code"],
            registry=r,
        )
        self.cni_duration = Histogram(
            f"{PREFIX}_cni_plugin_duration_seconds",
            "Time of one CNI plugin invocation, by plugin type and CNI command.",
            ["plugin", "command"],
            buckets=CNI_BUCKETS,
            registry=r,
        )
        self.cni_errors = Counter(
            f"{PREFIX}_cni_plugin_errors",
            "CNI plugin invocations that failed (non-zero exit, timeout, not executable).",
            ["plugin", "command"],
            registry=r,
        )
        self.sandbox_step_duration = Histogram(
            f"{PREFIX}_sandbox_run_step_duration_seconds",
            "Time of each step of RunPodSandbox (create, checkpoint, start, pin, network...).",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.log_lines = Counter(
            f"{PREFIX}_log_follower_lines_written",
            "CRI log lines the log followers wrote to containers' log files.",
            registry=r,
        )
        self.log_lag = Histogram(
            f"{PREFIX}_log_follower_lag_seconds",
            "Age of a container's output when its CRI log line was written (per write).",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.docker_duration = Histogram(
            f"{PREFIX}_docker_request_duration_seconds",
            "Time of a Docker Engine API request (to its response headers), by operation.",
            ["operation"],
            buckets=DOCKER_BUCKETS,
            registry=r,
        )
        self.docker_errors = Counter(
            f"{PREFIX}_docker_request_errors",
            "Docker Engine API requests answered 4xx/5xx ('404', '409', '500'...) or not at all"
            " ('connection').",
            ["operation", "code"],
            registry=r,
        )
        self.container_events = Counter(
            f"{PREFIX}_container_events",
            "Events sent to GetContainerEvents subscribers, by event type.",
            ["type"],
            registry=r,
        )
        self.container_events_dropped_subscribers = Counter(
            f"{PREFIX}_container_events_dropped_subscribers",
            "GetContainerEvents streams ended because the subscriber fell behind.",
            registry=r,
        )

    def observe_sandbox_step(self, step: str, seconds: float) -> None:
        self.sandbox_step_duration.labels(step).observe(seconds)

    def count_event(self, event_type: int) -> None:
        names = {0: "created", 1: "started", 2: "stopped", 3: "deleted"}
        self.container_events.labels(names.get(event_type, str(event_type))).inc()
