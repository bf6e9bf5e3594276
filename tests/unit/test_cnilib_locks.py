"""The lock primitives behind "one operation per container, GC alone on its network"."""

from __future__ import annotations

import threading

from cnilib.locks import KeyedLocks, NetworkLocks, RWLock


def test_keyed_locks_are_dropped_when_unused() -> None:
    locks = KeyedLocks()
    with locks.hold("a"), locks.hold("b"):
        assert sorted(locks._locks) == ["a", "b"]
    assert locks._locks == {}


def test_keyed_lock_excludes_same_key_only() -> None:
    locks = KeyedLocks()
    inside = threading.Event()
    with locks.hold("a"):
        other = threading.Thread(target=lambda: _enter(locks, "b", inside))
        other.start()
        other.join(30)
        assert inside.is_set()  # a different key was not blocked
        blocked = threading.Event()
        same = threading.Thread(target=lambda: _enter(locks, "a", blocked))
        same.start()
        same.join(0.2)
        assert not blocked.is_set()
    same.join(30)
    assert blocked.is_set()


def _enter(locks: KeyedLocks, key: str, flag: threading.Event) -> None:
    with locks.hold(key):
        flag.set()


def test_readers_share_writer_excludes_and_waiting_writer_blocks_new_readers() -> None:
    lock = RWLock()
    order: list[str] = []
    with lock.read(), lock.read():  # readers share (re-entrant for different holders)
        writer = threading.Thread(target=lambda: _write(lock, order))
        writer.start()
        writer.join(0.2)
        assert order == []  # writer waits for readers
        late_reader = threading.Thread(target=lambda: _read(lock, order))
        late_reader.start()
        late_reader.join(0.2)
        assert order == []  # a waiting writer holds new readers back
    writer.join(30)
    late_reader.join(30)
    assert order == ["write", "read"]


def _write(lock: RWLock, order: list[str]) -> None:
    with lock.write():
        order.append("write")


def _read(lock: RWLock, order: list[str]) -> None:
    with lock.read():
        order.append("read")


def test_network_locks_one_per_name() -> None:
    locks = NetworkLocks()
    assert locks.get("a") is locks.get("a")
    assert locks.get("a") is not locks.get("b")
