"""The shim's container events: state changes in, ContainerEventResponses out to subscribers.

The verbs (create, start, stop, remove of containers and sandboxes) and the Docker event
watcher (a container that dies on its own) report a `Change` and return at once. One thread
turns each change into a ContainerEventResponse with the pod's current statuses (kubelet's
Evented PLEG replaces its cached pod status with what the event carries, so the event holds
the whole pod: its sandbox status and every container's status) and broadcasts it. One
thread keeps the order of events as they were reported; building the statuses (Docker
inspects) is off the RPC threads.

STOPPED is reported once per container or sandbox: StopContainer and Docker's `die` event
both see the same exit, and kubelet calls StopPodSandbox again and again. Nothing is reported
after DELETED: a late Docker event for a container already removed finds it gone again.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from cri_api import api_pb2
from shim.events.broadcaster import Broadcaster, Subscription

if TYPE_CHECKING:
    from shim.store.sandbox_record import SandboxRecord

log = logging.getLogger(__name__)

# Events a subscriber may be behind before it is dropped (containerd buffers 1000 in all).
DEFAULT_BUFFER = 256
# kubelet holds one stream; a few more for crictl or a monitoring agent. Each stream holds one
# of the gRPC server's threads (shim.server.MAX_WORKERS) for its whole life, so they are few.
MAX_SUBSCRIBERS = 8
# Changes waiting to be built: our own verbs report them, so only a stuck builder fills this.
PENDING_LIMIT = 10000
# Deleted ids remembered to drop late reports about them (ids are never reused).
DELETED_MEMORY = 4096

STOPPED = api_pb2.CONTAINER_STOPPED_EVENT
DELETED = api_pb2.CONTAINER_DELETED_EVENT

EventType: TypeAlias = "api_pb2.ContainerEventType.ValueType"
Event: TypeAlias = api_pb2.ContainerEventResponse


@dataclass(frozen=True)
class Change:
    container_id: str  # the sandbox's own id for a sandbox event, as containerd sends it
    sandbox_id: str
    event_type: EventType
    # The sandbox's record when the change happened: the event of a change built after the
    # sandbox is gone (its DELETED, its containers' DELETED) still names the pod from it.
    sandbox: SandboxRecord | None = None


Builder = Callable[[Change], Event | None]


class ContainerEvents:
    """The owner of the publishing thread; `close()` is idempotent."""

    def __init__(
        self,
        buffer: int = DEFAULT_BUFFER,
        max_subscribers: int = MAX_SUBSCRIBERS,
        on_sent: Callable[[Event], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self._broadcaster: Broadcaster[Event] = Broadcaster(buffer, max_subscribers)
        self._pending: queue.Queue[Change | None] = queue.Queue(PENDING_LIMIT)
        self._stopped: set[str] = set()
        self._deleted: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._on_sent = on_sent
        self._on_dropped = on_dropped
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self, build: Builder) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, args=(build,), name="container-events", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._broadcaster.close()
        if thread is not None:
            with contextlib.suppress(queue.Full):
                self._pending.put(None, timeout=1)
            thread.join(timeout=5)

    # ---- the producers' side ------------------------------------------------------------

    def report(self, change: Change) -> None:
        with self._lock:
            if change.container_id in self._deleted:
                return
            if change.event_type == STOPPED:
                if change.container_id in self._stopped:
                    return
                self._stopped.add(change.container_id)
            elif change.event_type == DELETED:
                self._stopped.discard(change.container_id)
                self._deleted[change.container_id] = None
                if len(self._deleted) > DELETED_MEMORY:
                    self._deleted.popitem(last=False)
            if self._closed or not self._broadcaster.count():
                return  # nobody listens: nothing is built
        try:
            self._pending.put_nowait(change)
        except queue.Full:
            log.error(
                "container events: %d changes are waiting to be sent; dropping %s of %s",
                PENDING_LIMIT,
                api_pb2.ContainerEventType.Name(change.event_type),
                change.container_id,
            )

    # ---- the subscribers' side ----------------------------------------------------------

    def subscribe(self) -> Subscription[Event]:
        return self._broadcaster.subscribe()

    def subscribers(self) -> int:
        return self._broadcaster.count()

    # ---- the publishing thread ----------------------------------------------------------

    def _run(self, build: Builder) -> None:
        while True:
            change = self._pending.get()
            if change is None:
                return
            try:
                event = build(change)
            except Exception:  # one unbuildable event must not end the stream for everyone
                log.exception(
                    "container events: failed to build the event of %s", change.container_id
                )
                continue
            if event is None:
                continue
            dropped = self._broadcaster.publish(event)
            if self._on_sent is not None:
                self._on_sent(event)
            if dropped:
                log.warning(
                    "container events: %d subscriber(s) fell %d events behind and were"
                    " disconnected",
                    dropped,
                    self._broadcaster.capacity,
                )
                if self._on_dropped is not None:
                    self._on_dropped(dropped)
