"""kubelet's Prometheus metrics (the text exposition format of /metrics on 10250), as pure
functions: parse samples, pick one histogram, subtract a snapshot taken before, and read a
quantile from the buckets the way PromQL's histogram_quantile() does."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Labels
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


def parse(text: str) -> list[Sample]:
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = tuple(
            (k, v.replace('\\"', '"').replace("\\\\", "\\"))
            for k, v in _LABEL.findall(m.group(2) or "")
        )
        samples.append(Sample(m.group(1), labels, _number(m.group(3))))
    return samples


def _number(text: str) -> float:
    # Go writes +Inf / -Inf / NaN; Python's float() reads "+Inf" and "-Inf" too.
    return float(text)


@dataclass(frozen=True)
class Histogram:
    """Cumulative buckets (upper bound -> count), ending with +Inf; sum and count."""

    buckets: tuple[tuple[float, float], ...]
    total: float
    count: float

    def minus(self, before: Histogram) -> Histogram:
        """The observations made since `before` (same metric, same labels, taken earlier)."""
        old = dict(before.buckets)
        return Histogram(
            tuple((le, n - old.get(le, 0.0)) for le, n in self.buckets),
            self.total - before.total,
            self.count - before.count,
        )

    def quantile(self, q: float) -> float | None:
        """histogram_quantile(q): linear within the bucket holding the rank; the highest
        finite bound when the rank falls in +Inf; None without observations."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(le):
                    return lower
                if cumulative == below:
                    return le
                return lower + (le - lower) * (rank - below) / (cumulative - below)
            lower, below = le, cumulative
        return lower

    def mean(self) -> float | None:
        return self.total / self.count if self.count > 0 else None


def histogram(samples: list[Sample], name: str, **match: str) -> Histogram:
    """The histogram `name`, summed over every label set that carries `match` (kubelet splits
    some by operation_type, the pod start SLI by nothing)."""

    def wanted(s: Sample) -> bool:
        return all(s.label(k) == v for k, v in match.items())

    buckets: dict[float, float] = {}
    total = count = 0.0
    for s in samples:
        if not wanted(s):
            continue
        if s.name == f"{name}_bucket":
            le = _number(s.label("le") or "+Inf")
            buckets[le] = buckets.get(le, 0.0) + s.value
        elif s.name == f"{name}_sum":
            total += s.value
        elif s.name == f"{name}_count":
            count += s.value
    return Histogram(tuple(sorted(buckets.items())), total, count)


def label_values(samples: list[Sample], name: str, key: str) -> list[str]:
    return sorted({v for s in samples if s.name.startswith(name) and (v := s.label(key))})
