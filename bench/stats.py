"""Latency summaries. A benchmark of 30 samples has no room for clever estimators: p50 and p99
are order statistics with linear interpolation between neighbours (numpy's default "linear"
method), so p99 of 30 samples sits between the two slowest calls."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of `samples`, interpolated linearly between ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50 / p99 (and the extremes, which explain a p99) of durations given in seconds, in ms."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(sum(ms) / len(ms), 2) if ms else math.nan,
        "min_ms": round(min(ms), 2) if ms else math.nan,
        "max_ms": round(max(ms), 2) if ms else math.nan,
    }


def ratio(numerator: float, denominator: float) -> float:
    if denominator <= 0 or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return round(numerator / denominator, 3)


def paired_difference_p50(a: Sequence[float], b: Sequence[float]) -> float:
    """Median of a[i] - b[i] over the pairs both sequences have."""
    return percentile([x - y for x, y in zip(a, b, strict=False)], 50)
