"""Locks that keep CNI operations from overlapping where the spec forbids it.

Spec ("Lifecycle & ordering"): the runtime must not run two operations on the same
container at once, and (1.1 GC) must not GC a network while ADD/DEL run on it.
Hence a mutex per container id and a readers-writer lock per network: ADD/DEL/CHECK
take the network lock shared, GC takes it exclusive. Lock order is always network
first, container second, which rules out deadlock between the two kinds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class KeyedLocks:
    """One mutex per key, created on demand and dropped when nobody holds or waits."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class NetworkLocks:
    """An RWLock per network name (networks are few and long-lived: never dropped)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, RWLock] = {}

    def get(self, name: str) -> RWLock:
        with self._guard:
            return self._locks.setdefault(name, RWLock())
