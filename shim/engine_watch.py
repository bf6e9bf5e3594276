"""Docker's event stream keeps the shim's view current without polling.

kubelet relists every second: ListContainers and ListPodSandbox must answer from memory, yet
see a container that died on its own. One thread follows `GET /events` for the containers of
this shim (the owner label) and, for each event, re-reads that container's state from
`inspect` (authoritative, so events arriving late or twice do no harm). On every (re)connect
it first resynchronises everything, subscribing from just before the resync so nothing falls
between the two.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from cri_api import api_pb2
from shim.container.refresh import refresh
from shim.context import ShimContext
from shim.engine import labels as L
from shim.events.report import container_changed, sandbox_changed
from shim.store.container_record import ContainerState

log = logging.getLogger(__name__)

# The events after which a container's record (and the inspect ContainerStatus reports from)
# is read again: every change of run state, and `docker update` of its resources.
REFRESH_ACTIONS = frozenset(
    {"start", "die", "oom", "stop", "kill", "restart", "pause", "unpause", "update"}
)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 10.0


class EventStream(Protocol):
    def __iter__(self) -> Iterator[dict[str, Any]]: ...
    def close(self) -> None: ...


class EngineWatcher:
    def __init__(self, ctx: ShimContext, subscribe: Callable[[float], EventStream]) -> None:
        self._ctx = ctx
        self._subscribe = subscribe  # since (unix seconds) → a closable stream of events
        self._stream: EventStream | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._closed.is_set():
            try:
                since = time.time()
                self._stream = self._subscribe(since)
                self._resync()
                delay = RECONNECT_MIN_S
                for event in self._stream:
                    self.handle(event)
                    if self._closed.is_set():
                        return
                log.warning("docker event stream ended; reconnecting")
            except Exception as err:  # Docker down or restarting: keep trying
                if self._closed.is_set():
                    return
                log.warning("docker event stream failed (%s); retrying in %.1f s", err, delay)
            self._ctx.liveness.synced = False
            self._closed.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _resync(self) -> None:
        running = {c.id for c in self._ctx.infra.list_infra() if c.running}
        self._ctx.liveness.reset(running)
        self._ctx.liveness.synced = True
        for record in self._ctx.containers.all():
            with self._ctx.containers.locked(f"refresh:{record.id}"):
                refresh(self._ctx, record)

    def handle(self, event: dict[str, Any]) -> None:
        if event.get("Type") != "container":
            return
        actor = event.get("Actor") or {}
        container_id = str(actor.get("ID") or event.get("id") or "")
        attributes = actor.get("Attributes") or {}
        action = str(event.get("Action") or event.get("status") or "")
        if attributes.get(L.SANDBOX) == "true":
            if action == "start":
                self._ctx.liveness.mark(container_id, True)
            elif action in ("die", "destroy"):
                self._ctx.liveness.mark(container_id, False)
                if action == "die" and self._ctx.store.get(container_id) is not None:
                    # An infra container that died on its own (or by StopPodSandbox, which
                    # reports it too: the hub sends one STOPPED).
                    sandbox_changed(self._ctx, container_id, api_pb2.CONTAINER_STOPPED_EVENT)
            return
        record = self._ctx.containers.get(container_id)
        if record is None:
            return
        if action == "destroy":
            # Removed behind our back (`docker rm`): forget it as RemoveContainer would.
            self._ctx.logs.forget(container_id)
            self._ctx.containers.drop(container_id)
            container_changed(
                self._ctx, container_id, record.sandbox_id, api_pb2.CONTAINER_DELETED_EVENT
            )
            return
        if action in REFRESH_ACTIONS:
            with self._ctx.containers.locked(f"refresh:{container_id}"):
                refreshed = refresh(self._ctx, record)
            if refreshed is not None and refreshed.state is ContainerState.EXITED:
                # A container that exited on its own; StopContainer reports its own stops,
                # and the hub sends one STOPPED per container.
                container_changed(
                    self._ctx, container_id, record.sandbox_id, api_pb2.CONTAINER_STOPPED_EVENT
                )
        if action == "die":
            self._ctx.logs.notify_exited(container_id)
