"""One producer, many subscribers, each with a bounded queue of its own.

Pure threading, no gRPC: a subscriber that falls `capacity` items behind is closed with
`overflowed` set (its stream is then ended with an error), never buffered without bound, and
the others are not slowed down by it. A subscriber that goes away closes its subscription,
which frees its slot at once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class TooManySubscribersError(Exception):
    """Every subscriber slot is taken."""


class SubscriberOverflowError(Exception):
    """The subscriber fell behind by more than its queue holds and was dropped."""


class Subscription(Generic[T]):
    """What one subscriber reads: iterate it (blocking) until it is closed."""

    def __init__(self, capacity: int, on_close: Callable[[Subscription[T]], None]) -> None:
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._cond = threading.Condition()
        self._closed = False
        self._on_close = on_close
        self.overflowed = False
        # Called once, from the publishing thread, when this subscriber is dropped.
        self.on_overflow: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, item: T) -> bool:
        """Queue `item`; False when that overflowed the queue (the subscription is closed)."""
        with self._cond:
            if self._closed:
                return True
            if len(self._items) < self._capacity:
                self._items.append(item)
                self._cond.notify()
                return True
            self.overflowed = True
            self._closed = True
            self._items.clear()  # nothing more reaches a dropped subscriber
            self._cond.notify_all()
        self._on_close(self)
        callback = self.on_overflow
        if callback is not None:
            callback()
        return False

    def get(self, timeout: float | None = None) -> T | None:
        """The next item; None when closed (or after `timeout`); SubscriberOverflowError
        once it was dropped for falling behind."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            if self._items:
                return self._items.popleft()
            if self.overflowed:
                raise SubscriberOverflowError(
                    f"the subscriber fell more than {self._capacity} events behind"
                )
            return None

    def __iter__(self) -> Iterator[T]:
        while (item := self.get()) is not None:
            yield item

    def close(self) -> None:
        """Idempotent; wakes a reader blocked in `get`."""
        with self._cond:
            if self._closed:
                already = True
            else:
                already = False
                self._closed = True
                self._cond.notify_all()
        if not already:
            self._on_close(self)


class Broadcaster(Generic[T]):
    def __init__(self, capacity: int, max_subscribers: int) -> None:
        if capacity < 1 or max_subscribers < 1:
            raise ValueError("capacity and max_subscribers must be positive")
        self.capacity = capacity
        self.max_subscribers = max_subscribers
        self._lock = threading.Lock()
        self._subscribers: list[Subscription[T]] = []

    def subscribe(self) -> Subscription[T]:
        with self._lock:
            if len(self._subscribers) >= self.max_subscribers:
                raise TooManySubscribersError(
                    f"{self.max_subscribers} event subscribers are already connected"
                )
            subscription: Subscription[T] = Subscription(self.capacity, self._remove)
            self._subscribers.append(subscription)
            return subscription

    def publish(self, item: T) -> int:
        """Give `item` to every subscriber; the number of those dropped for falling behind."""
        with self._lock:
            subscribers = list(self._subscribers)
        return sum(1 for s in subscribers if not s.offer(item))

    def count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def close(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            subscription.close()

    def _remove(self, subscription: Subscription[T]) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)
