"""The Prometheus text parser and histogram quantiles the kubelet benchmark reports with
(pure; no kubelet needed)."""

from __future__ import annotations

import math

import pytest

from tests.kubelet.harness import rpc_error_lines, unimplemented_rpcs
from tests.kubelet.metrics import Histogram, histogram, label_values, parse

TEXT = """\
# HELP kubelet_runtime_operations_duration_seconds [ALPHA] Duration of runtime operations.
# TYPE kubelet_runtime_operations_duration_seconds histogram
kubelet_runtime_operations_duration_seconds_bucket{operation_type="list_containers",le="0.005"} 90
kubelet_runtime_operations_duration_seconds_bucket{operation_type="list_containers",le="0.01"} 98
kubelet_runtime_operations_duration_seconds_bucket{operation_type="list_containers",le="+Inf"} 100
kubelet_runtime_operations_duration_seconds_sum{operation_type="list_containers"} 0.4
kubelet_runtime_operations_duration_seconds_count{operation_type="list_containers"} 100
kubelet_runtime_operations_duration_seconds_bucket{operation_type="version",le="0.005"} 3
kubelet_runtime_operations_duration_seconds_bucket{operation_type="version",le="0.01"} 3
kubelet_runtime_operations_duration_seconds_bucket{operation_type="version",le="+Inf"} 3
kubelet_runtime_operations_duration_seconds_sum{operation_type="version"} 0.003
kubelet_runtime_operations_duration_seconds_count{operation_type="version"} 3
kubelet_pod_start_sli_duration_seconds_bucket{le="0.5"} 0
kubelet_pod_start_sli_duration_seconds_bucket{le="1"} 10
kubelet_pod_start_sli_duration_seconds_bucket{le="2"} 30
kubelet_pod_start_sli_duration_seconds_bucket{le="+Inf"} 30
kubelet_pod_start_sli_duration_seconds_sum 35
kubelet_pod_start_sli_duration_seconds_count 30
weird_metric{path="a \\"quoted\\" one"} 1.5e+00 1700000000000
"""


def test_parse_reads_names_labels_values_and_timestamps() -> None:
    samples = parse(TEXT)
    weird = [s for s in samples if s.name == "weird_metric"]
    assert weird and weird[0].value == 1.5 and weird[0].label("path") == 'a "quoted" one'
    assert label_values(
        samples, "kubelet_runtime_operations_duration_seconds", "operation_type"
    ) == ["list_containers", "version"]


def test_histogram_by_label_and_quantiles() -> None:
    samples = parse(TEXT)
    h = histogram(
        samples, "kubelet_runtime_operations_duration_seconds", operation_type="list_containers"
    )
    assert h.count == 100 and h.buckets[-1] == (math.inf, 100)
    assert h.quantile(0.5) == pytest.approx(0.005 * 50 / 90)
    assert h.quantile(0.99) == 0.01  # in +Inf: the highest finite bound
    start = histogram(samples, "kubelet_pod_start_sli_duration_seconds")
    assert start.quantile(0.5) == pytest.approx(1.25)
    assert start.quantile(0.99) == pytest.approx(1 + 0.985)
    assert start.mean() == pytest.approx(35 / 30)


def test_histogram_minus_an_earlier_snapshot() -> None:
    before = Histogram(((1.0, 5.0), (2.0, 5.0), (math.inf, 5.0)), 3.0, 5.0)
    after = Histogram(((1.0, 5.0), (2.0, 15.0), (math.inf, 15.0)), 18.0, 15.0)
    delta = after.minus(before)
    assert delta.count == 10 and delta.total == 15.0
    assert delta.quantile(0.5) == pytest.approx(1.5)
    assert Histogram((), 0, 0).quantile(0.5) is None


KUBELET_LOG = "\n".join(
    [
        'I0102 15:04:05.000000    1234 kubelet.go:1] "Starting kubelet"',
        'E0102 15:04:06.000000    1234 log.go:32] "GetContainerEvents failed" err="rpc error:'
        " code = Unimplemented desc = runtime.v1.RuntimeService/GetContainerEvents is not"
        ' implemented by cri-shim"',
        'E0102 15:04:07.000000    1234 remote_runtime.go:1] "ListContainers failed" err="rpc'
        ' error: code = Unavailable desc = connection refused"',
    ]
)


def test_kubelet_log_scanners() -> None:
    assert len(rpc_error_lines(KUBELET_LOG)) == 2
    assert unimplemented_rpcs(KUBELET_LOG) == {"RuntimeService/GetContainerEvents"}
