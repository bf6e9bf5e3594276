"""The pure parts of the metrics: the step timer, the scrape-time collector over fake
sources, the Docker operation labels, the metrics address, the CNI executor wrapper and the
log lag observer, each on its own registry."""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest
from prometheus_client import generate_latest

from shim.metrics.address import split_address
from shim.metrics.cni import ObservedExecutor
from shim.metrics.collector import StateCollector, WarmWorkerState
from shim.metrics.docker import operation
from shim.metrics.logs import LogMetrics
from shim.metrics.registry import ShimMetrics
from shim.sandbox.step_timer import StepTimer
from shim.timestamps import TimestampFormatter


def test_step_timer_marks_consecutive_steps() -> None:
    now = [10.0]
    seen: list[tuple[str, float]] = []
    timer = StepTimer(lambda step, s: seen.append((step, s)), clock=lambda: now[0])
    now[0] = 10.5
    assert timer.mark("create") == 0.5
    now[0] = 10.75
    timer.mark("start")
    assert timer.steps == seen == [("create", 0.5), ("start", 0.25)]
    assert timer.as_json() == [
        {"step": "create", "seconds": 0.5},
        {"step": "start", "seconds": 0.25},
    ]


def test_step_timer_never_reports_negative_durations() -> None:
    now = [5.0]
    timer = StepTimer(clock=lambda: now[0])
    now[0] = 4.0
    assert timer.mark("clock went back") == 0.0


class FakeSources:
    def __init__(self, warm: WarmWorkerState | None) -> None:
        self.warm = warm

    def sandbox_states(self) -> Mapping[str, int]:
        return {"ready": 2, "notready": 1}

    def container_states(self) -> Mapping[str, int]:
        return {"running": 3}

    def warm_worker(self) -> WarmWorkerState | None:
        return self.warm

    def event_subscribers(self) -> int:
        return 1


def _scrape(metrics: ShimMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_collector_reads_the_state_at_scrape_time() -> None:
    metrics = ShimMetrics()
    warm = WarmWorkerState(up=True, children=5, busy=1, executions={"warm": 7, "fallback": 1})
    metrics.registry.register(StateCollector(FakeSources(warm)))
    text = _scrape(metrics)
    for line in (
        'cri_shim_sandboxes{state="ready"} 2.0',
        'cri_shim_sandboxes{state="notready"} 1.0',
        'cri_shim_containers{state="running"} 3.0',
        'cri_shim_containers{state="exited"} 0.0',
        "cri_shim_container_events_subscribers 1.0",
        "cri_shim_cni_warm_worker_up 1.0",
        "cri_shim_cni_warm_worker_children 5.0",
        "cri_shim_cni_warm_worker_busy_children 1.0",
        'cri_shim_cni_plugin_executions_total{path="warm"} 7.0',
        'cri_shim_cni_plugin_executions_total{path="fallback"} 1.0',
        'cri_shim_cni_plugin_executions_total{path="foreign"} 0.0',
    ):
        assert line in text


def test_collector_without_a_warm_worker_has_no_worker_families() -> None:
    metrics = ShimMetrics()
    metrics.registry.register(StateCollector(FakeSources(None)))
    text = _scrape(metrics)
    assert "cri_shim_sandboxes" in text
    assert "cri_shim_cni_warm_worker" not in text


def test_registries_are_private() -> None:
    one, two = ShimMetrics(), ShimMetrics()  # the global registry would refuse the second
    one.observe_sandbox_step("create", 0.1)
    assert 'cri_shim_sandbox_run_step_duration_seconds_count{step="create"} 1.0' in _scrape(one)
    assert 'step="create"' not in _scrape(two)


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("GET", "http+docker://localhost/v1.41/containers/3f2a/json", "GET containers/{id}/json"),
        ("GET", "http+docker://localhost/v1.41/containers/json?all=1", "GET containers/json"),
        (
            "POST",
            "http+docker://localhost/v1.41/containers/create?name=x",
            "POST containers/create",
        ),
        (
            "DELETE",
            "http+docker://localhost/v1.41/containers/3f2a?force=1",
            "DELETE containers/{id}",
        ),
        (
            "GET",
            "http+docker://localhost/v1.41/images/cri-shim.test/busybox:latest/json",
            "GET images/{id}/json",
        ),
        ("POST", "http+docker://localhost/v1.41/exec/ab12/start", "POST exec/{id}/start"),
        ("GET", "http+docker://localhost/v1.41/events?filters=x", "GET events"),
        ("GET", "http+docker://localhost/_ping", "GET _ping"),
        ("GET", "http+docker://localhost/", "GET /"),
    ],
)
def test_docker_operation_labels(method: str, url: str, expected: str) -> None:
    assert operation(method, url) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:9099", ("127.0.0.1", 9099)), ("[::1]:80", ("::1", 80))],
)
def test_metrics_address(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("9099", "is not host:port"),
        (":9099", "is not host:port"),
        ("localhost:http", "is not a number"),
        ("127.0.0.1:0", "out of range"),
        ("127.0.0.1:70000", "out of range"),
    ],
)
def test_bad_metrics_address(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_address(address)


class FakeExecutor:
    def __init__(self, answer: tuple[int, bytes, bytes] | Exception) -> None:
        self.answer = answer

    def run(
        self, path: str, env: Mapping[str, str], stdin: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_observed_executor_times_and_counts_failures() -> None:
    metrics = ShimMetrics()
    env = {"CNI_COMMAND": "ADD"}
    ObservedExecutor(FakeExecutor((0, b"{}", b"")), metrics).run("/opt/bridge", env, b"", 1)
    ObservedExecutor(FakeExecutor((1, b"", b"")), metrics).run("/opt/bridge", env, b"", 1)
    with pytest.raises(TimeoutError):
        ObservedExecutor(FakeExecutor(TimeoutError()), metrics).run("/opt/bridge", env, b"", 1)
    text = _scrape(metrics)
    count = 'cri_shim_cni_plugin_duration_seconds_count{command="ADD",plugin="bridge"} 3.0'
    assert count in text
    assert 'cri_shim_cni_plugin_errors_total{command="ADD",plugin="bridge"} 2.0' in text


def test_log_metrics_count_lines_and_lag() -> None:
    metrics = ShimMetrics()
    observe = LogMetrics(metrics)
    stamp = TimestampFormatter()(time.time_ns() - 2_000_000_000)
    observe([stamp + b" stdout F one\n", stamp + b" stdout F two\n"])
    observe([b"not a stamp\n"])  # counted, no lag
    observe([])
    text = _scrape(metrics)
    assert "cri_shim_log_follower_lines_written_total 3.0" in text
    assert "cri_shim_log_follower_lag_seconds_count 1.0" in text
    assert 'cri_shim_log_follower_lag_seconds_bucket{le="1.0"} 0.0' in text
    assert 'cri_shim_log_follower_lag_seconds_bucket{le="5.0"} 1.0' in text
