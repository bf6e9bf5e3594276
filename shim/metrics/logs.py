"""The log followers' metrics: lines written, and how far behind the container's output the
CRI file is (the newest line of each write against the clock)."""

from __future__ import annotations

import time

from shim.metrics.registry import ShimMetrics
from shim.timestamps import FIXED_WIDTH, TimestampError, parse_general


class LogMetrics:
    """A LinesObserver for shim.container.log_follower.LogFollowers; thread-safe (it keeps
    no state of its own: many followers call it at once)."""

    def __init__(self, metrics: ShimMetrics) -> None:
        self._lines = metrics.log_lines
        self._lag = metrics.log_lag

    def __call__(self, lines: list[bytes]) -> None:
        if not lines:
            return
        self._lines.inc(len(lines))
        # Every CRI line begins with its fixed-width RFC 3339 stamp.
        try:
            stamp = parse_general(lines[-1][:FIXED_WIDTH])
        except TimestampError:
            return
        self._lag.observe(max(0.0, (time.time_ns() - stamp) / 1e9))
