"""The benchmark's statistics: pure functions over fixed samples (no timing here)."""

from __future__ import annotations

import math

import pytest

from bench.stats import paired_difference_p50, percentile, ratio, summarize_ms


@pytest.mark.parametrize(
    ("samples", "q", "expected"),
    [
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([5.0], 99, 5.0),
        # 30 samples: p99 sits 71% of the way from the 29th to the 30th value.
        ([float(i) for i in range(1, 31)], 99, 29.71),
    ],
)
def test_percentile_interpolates_between_ranks(
    samples: list[float], q: float, expected: float
) -> None:
    assert percentile(samples, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_summary_is_in_milliseconds() -> None:
    summary = summarize_ms([0.010, 0.020, 0.030])
    assert summary["n"] == 3
    assert summary["p50_ms"] == pytest.approx(20.0)
    assert summary["min_ms"] == pytest.approx(10.0)
    assert summary["max_ms"] == pytest.approx(30.0)


def test_ratio_without_a_baseline_is_nan() -> None:
    assert ratio(2.0, 1.0) == 2.0
    assert math.isnan(ratio(1.0, 0.0))


def test_paired_difference_takes_the_median_of_pairs() -> None:
    assert paired_difference_p50([10.0, 20.0, 30.0], [9.0, 18.0, 27.0]) == pytest.approx(2.0)
