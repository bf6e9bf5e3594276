"""The warm worker's pool grows with the load (issue 10, item 6): idle children are kept
ready however many are busy, up to a bound. Forks are faked: only the bookkeeping runs."""

from __future__ import annotations

import itertools
import os
import socket

import pytest

from netplugins import worker


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> worker._Pool:
    pids = itertools.count(1000)
    monkeypatch.setattr(os, "fork", lambda: next(pids))  # the parent's side only
    return worker._Pool(socket.socket(socket.AF_UNIX), taken_w=-1, close_in_child=[])


def test_idle_children_stay_ready_during_a_burst(pool: worker._Pool) -> None:
    pool.fill(4)
    assert len(pool.idle) == 4
    pool.busy = {1, 2, 3, 4, 5, 6, 7, 8}  # eight requests in flight
    pool.idle.clear()
    pool.fill(4)
    assert len(pool.idle) == 4  # not 1: the ninth to twelfth requests find a child waiting


def test_the_pool_is_bounded(pool: worker._Pool) -> None:
    pool.busy = set(range(worker.MAX_CHILDREN - 2))
    pool.fill(4)
    assert len(pool.idle) + len(pool.busy) == worker.MAX_CHILDREN
    pool.busy = set(range(worker.MAX_CHILDREN + 5))
    pool.idle.clear()
    pool.fill(4)
    assert len(pool.idle) == 1  # always one to accept, or a new connection would hang
