"""bench.bench_load's pure helpers: round order, phases, rates, the target check."""

from __future__ import annotations

import math

from bench.bench_load import abba, meets, phase_of, pods_per_s


def test_abba_alternates_who_goes_first() -> None:
    assert abba(("a", "b"), 1) == ["a", "b"]
    assert abba(("a", "b"), 3) == ["a", "b", "b", "a", "a", "b"]
    assert abba(("a", "b"), 0) == []


def test_phase_of_splits_at_arrival_and_release() -> None:
    assert phase_of(0.5, all_arrived=1.0, released=2.0) == "starting"
    assert phase_of(1.0, all_arrived=1.0, released=2.0) == "held"
    assert phase_of(2.5, all_arrived=1.0, released=2.0) == "finishing"


def test_pods_per_s() -> None:
    assert pods_per_s(24, 4.0) == 6.0
    assert math.isnan(pods_per_s(24, 0.0))


def test_meets_never_holds_without_samples() -> None:
    assert meets(19.9, 20.0)
    assert meets(20.0, 20.0)
    assert not meets(20.1, 20.0)
    assert not meets(math.nan, 20.0)
