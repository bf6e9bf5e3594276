"""The events broadcaster and hub, on plain values and fakes: bounded queues, a slow
subscriber dropped without slowing the others, cancellation freeing a slot, one STOPPED per
container, nothing built while nobody listens."""

from __future__ import annotations

import threading
import time

import pytest

from cri_api import api_pb2
from shim.events.broadcaster import (
    Broadcaster,
    SubscriberOverflowError,
    TooManySubscribersError,
)
from shim.events.hub import Change, ContainerEvents


def test_every_subscriber_gets_every_item_in_order() -> None:
    b: Broadcaster[int] = Broadcaster(capacity=10, max_subscribers=2)
    one, two = b.subscribe(), b.subscribe()
    for i in range(5):
        assert b.publish(i) == 0
    assert [one.get(0) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert [two.get(0) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert one.get(0) is None  # nothing more, still open
    assert not one.closed


def test_a_slow_subscriber_is_dropped_and_the_others_keep_receiving() -> None:
    b: Broadcaster[int] = Broadcaster(capacity=3, max_subscribers=4)
    slow, fast = b.subscribe(), b.subscribe()
    dropped_calls: list[int] = []
    slow.on_overflow = lambda: dropped_calls.append(1)
    dropped = 0
    for i in range(10):
        dropped += b.publish(i)
        assert fast.get(0) == i
    assert dropped == 1 and dropped_calls == [1]
    assert slow.overflowed and slow.closed
    with pytest.raises(SubscriberOverflowError, match="more than 3 events behind"):
        slow.get(0)
    assert b.count() == 1  # its slot is free


def test_subscriber_limit_and_close_frees_a_slot() -> None:
    b: Broadcaster[int] = Broadcaster(capacity=1, max_subscribers=1)
    first = b.subscribe()
    with pytest.raises(TooManySubscribersError, match="1 event subscribers"):
        b.subscribe()
    first.close()
    first.close()  # idempotent
    assert b.count() == 0
    b.subscribe()


def test_close_wakes_a_blocked_reader() -> None:
    b: Broadcaster[int] = Broadcaster(capacity=1, max_subscribers=1)
    sub = b.subscribe()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(list(sub)))
    reader.start()
    time.sleep(0.05)
    b.publish(7)
    time.sleep(0.05)
    sub.close()
    reader.join(timeout=2)
    assert not reader.is_alive()
    assert got == [[7]]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Broadcaster(capacity=0, max_subscribers=1)


def _event(change: Change) -> api_pb2.ContainerEventResponse:
    return api_pb2.ContainerEventResponse(
        container_id=change.container_id, container_event_type=change.event_type
    )


def test_hub_sends_one_stopped_nothing_after_deleted_and_builds_nothing_unheard() -> None:
    built: list[Change] = []
    sent: list[int] = []

    def build(change: Change) -> api_pb2.ContainerEventResponse:
        built.append(change)
        return _event(change)

    hub = ContainerEvents(buffer=16, on_sent=lambda e: sent.append(e.container_event_type))
    hub.start(build)
    try:
        hub.report(Change("c0", "s", api_pb2.CONTAINER_CREATED_EVENT))  # nobody listens
        sub = hub.subscribe()
        for kind in (
            api_pb2.CONTAINER_CREATED_EVENT,
            api_pb2.CONTAINER_STARTED_EVENT,
            api_pb2.CONTAINER_STOPPED_EVENT,
            api_pb2.CONTAINER_STOPPED_EVENT,  # StopContainer and Docker's die: one event
            api_pb2.CONTAINER_DELETED_EVENT,
            api_pb2.CONTAINER_DELETED_EVENT,  # a late Docker event finds it gone again
            api_pb2.CONTAINER_STOPPED_EVENT,
        ):
            hub.report(Change("c1", "s", kind))
        got = [sub.get(2) for _ in range(4)]
        assert [(e.container_id, e.container_event_type) for e in got if e] == [
            ("c1", api_pb2.CONTAINER_CREATED_EVENT),
            ("c1", api_pb2.CONTAINER_STARTED_EVENT),
            ("c1", api_pb2.CONTAINER_STOPPED_EVENT),
            ("c1", api_pb2.CONTAINER_DELETED_EVENT),
        ]
        assert sub.get(0.2) is None
        assert [c.container_id for c in built] == ["c1"] * 4
        assert len(sent) == 4
    finally:
        hub.close()
        hub.close()
    assert sub.closed


def test_hub_survives_a_failing_build_and_skips_unbuildable_events() -> None:
    def build(change: Change) -> api_pb2.ContainerEventResponse | None:
        if change.container_id == "boom":
            raise RuntimeError("cannot inspect")
        if change.container_id == "gone":
            return None
        return _event(change)

    hub = ContainerEvents(buffer=4)
    hub.start(build)
    try:
        sub = hub.subscribe()
        for cid in ("boom", "gone", "ok"):
            hub.report(Change(cid, "s", api_pb2.CONTAINER_CREATED_EVENT))
        event = sub.get(2)
        assert event is not None and event.container_id == "ok"
    finally:
        hub.close()


def test_hub_counts_dropped_subscribers() -> None:
    dropped: list[int] = []
    release = threading.Event()

    hub = ContainerEvents(buffer=2, on_dropped=dropped.append)
    hub.start(_event)
    try:
        slow = hub.subscribe()
        for i in range(3):
            hub.report(Change(f"c{i}", "s", api_pb2.CONTAINER_CREATED_EVENT))
        deadline = time.monotonic() + 2
        while not dropped and time.monotonic() < deadline:
            time.sleep(0.01)
        assert dropped == [1]
        assert slow.overflowed
        assert hub.subscribers() == 0
    finally:
        release.set()
        hub.close()
