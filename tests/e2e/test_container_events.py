"""GetContainerEvents end to end over a real shim and Docker: the events of a pod's and its
containers' lifecycle in order with the pod's statuses, a container that exits on its own
reported STOPPED (from Docker's die event), one STOPPED however many stops, a slow subscriber
disconnected while another keeps receiving, and a cancelled stream freeing its slot."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from cri_api import api_pb2, api_pb2_grpc
from shim.events.hub import MAX_SUBSCRIBERS
from tests.e2e.conftest import Pods, running_shim
from tests.e2e.harness import NetworkPlan, Shim, container_config, pod_config
from tests.e2e.test_metrics import free_port, scrape

pytestmark = pytest.mark.integration

CREATED = api_pb2.CONTAINER_CREATED_EVENT
STARTED = api_pb2.CONTAINER_STARTED_EVENT
STOPPED = api_pb2.CONTAINER_STOPPED_EVENT
DELETED = api_pb2.CONTAINER_DELETED_EVENT
Event = api_pb2.ContainerEventResponse


class Subscriber:
    """One GetContainerEvents stream read by a thread into a queue."""

    def __init__(self, shim: Shim) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self.call = shim.runtime().GetContainerEvents(api_pb2.GetEventsRequest())
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.put(event)
        except grpc.RpcError as err:
            self.error = err

    def next_of(self, ids: set[str], timeout: float = 20) -> Event:
        """The next event about one of `ids` (others' events are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if event.container_id in ids:
                return event

    def quiet(self, ids: set[str], seconds: float) -> list[Event]:
        """What arrives about `ids` within `seconds` (to prove there is nothing more)."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if event.container_id in ids:
                got.append(event)
        return got

    def close(self) -> None:
        self.call.cancel()  # type: ignore[no-untyped-call]
        self._thread.join(timeout=10)


def wait_subscribers(port: int, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)["cri_shim_container_events_subscribers"]
        if samples[0][2] == count:
            return
        assert time.monotonic() < deadline, f"subscribers {samples[0][2]}, not {count}"
        time.sleep(0.05)


@pytest.fixture
def events_shim(plan: NetworkPlan, pods: Pods) -> Iterator[tuple[Shim, int]]:
    port = free_port()
    args = ["--metrics-address", f"127.0.0.1:{port}", "--container-events-buffer", "4"]
    with running_shim(plan, pods, extra_args=args) as shim:
        yield shim, port


@contextmanager
def subscribed(shim: Shim, port: int, already: int = 0) -> Iterator[Subscriber]:
    subscriber = Subscriber(shim)
    try:
        wait_subscribers(port, already + 1)
        yield subscriber
    finally:
        subscriber.close()


def _states(event: Event) -> dict[str, int]:
    return {s.id: s.state for s in event.containers_statuses}


def test_lifecycle_events_in_order_with_statuses(
    events_shim: tuple[Shim, int], pods: Pods, tmp_path: Path
) -> None:
    shim, port = events_shim
    with subscribed(shim, port) as sub:
        config = pod_config(log_directory=str(tmp_path))
        sid = pods.add(shim.run_pod(config))
        for kind in (CREATED, STARTED):
            event = sub.next_of({sid})
            assert event.container_event_type == kind
            assert event.pod_sandbox_status.id == sid
            assert event.pod_sandbox_status.metadata.uid == config.metadata.uid
            assert event.pod_sandbox_status.state == api_pb2.SANDBOX_READY
            assert event.created_at > 0

        cid = shim.create_container(sid, container_config("app", ["sleep", "60"]), config)
        event = sub.next_of({cid})
        assert event.container_event_type == CREATED
        assert event.pod_sandbox_status.id == sid
        assert cid in _states(event)

        shim.start_container(cid)
        event = sub.next_of({cid})
        assert event.container_event_type == STARTED
        assert _states(event)[cid] == api_pb2.CONTAINER_RUNNING

        shim.stop_container(cid, timeout=1)
        shim.stop_container(cid, timeout=1)  # a second stop reports nothing new
        event = sub.next_of({cid})
        assert event.container_event_type == STOPPED
        assert _states(event)[cid] == api_pb2.CONTAINER_EXITED

        shim.remove_container(cid)
        event = sub.next_of({cid})
        assert event.container_event_type == DELETED
        assert cid not in _states(event)
        assert sub.quiet({cid}, 1.0) == []  # Docker's die and destroy added nothing

        # A container that exits on its own: only Docker's die event tells.
        quitter = shim.create_container(
            sid, container_config("quitter", ["sh", "-c", "sleep 0.5; exit 3"]), config
        )
        shim.start_container(quitter)
        kinds = [sub.next_of({quitter}).container_event_type for _ in range(2)]
        assert kinds == [CREATED, STARTED]
        event = sub.next_of({quitter})
        assert event.container_event_type == STOPPED
        status = next(s for s in event.containers_statuses if s.id == quitter)
        assert status.state == api_pb2.CONTAINER_EXITED
        assert status.exit_code == 3

        shim.stop_pod(sid)
        shim.stop_pod(sid)  # kubelet repeats stops: one STOPPED
        event = sub.next_of({sid})
        assert event.container_event_type == STOPPED
        assert event.pod_sandbox_status.state == api_pb2.SANDBOX_NOTREADY
        shim.remove_pod(sid)
        event = sub.next_of({sid, quitter})
        # RemovePodSandbox removes the containers first, then the sandbox itself.
        assert (event.container_id, event.container_event_type) == (quitter, DELETED)
        event = sub.next_of({sid})
        assert event.container_event_type == DELETED
        assert event.pod_sandbox_status.id == sid  # kubelet forgets the pod on it
        assert sub.quiet({sid, quitter}, 1.0) == []
    wait_subscribers(port, 0)  # the cancelled stream freed its slot


def test_slow_subscriber_is_dropped_and_others_keep_receiving(
    events_shim: tuple[Shim, int], pods: Pods, tmp_path: Path
) -> None:
    shim, port = events_shim
    config = pod_config(log_directory=str(tmp_path))
    sid = pods.add(shim.run_pod(config))
    # The slow one never reads, over a channel whose flow-control window holds ~one event,
    # so the shim's queue for it (4 events) fills at once.
    slow_channel = grpc.insecure_channel(
        shim.endpoint, options=[("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]
    )
    try:
        slow = api_pb2_grpc.RuntimeServiceStub(slow_channel).GetContainerEvents(
            api_pb2.GetEventsRequest()
        )
        wait_subscribers(port, 1)
        with subscribed(shim, port, already=1) as fast:
            made = []
            for i in range(12):
                cid = shim.create_container(sid, container_config(f"churn-{i}", ["true"]), config)
                shim.remove_container(cid)
                made.append(cid)
            for cid in made:
                assert fast.next_of({cid}).container_event_type == CREATED
                assert fast.next_of({cid}).container_event_type == DELETED
            wait_subscribers(port, 1)  # the slow one is gone, the fast one stays
            dropped = scrape(port)["cri_shim_container_events_dropped_subscribers_total"]
            assert dropped[0][2] >= 1
        with pytest.raises(grpc.RpcError) as ended:
            for _ in slow:
                pass
        assert ended.value.code() in (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.CANCELLED,
        ), ended.value
    finally:
        slow_channel.close()
    assert "fell 4 events behind and were disconnected" in shim.log()


def test_subscribers_are_bounded_and_other_calls_still_answer(
    events_shim: tuple[Shim, int],
) -> None:
    """Each stream holds a server thread: past MAX_SUBSCRIBERS a new one is refused with
    RESOURCE_EXHAUSTED, and the other RPCs keep answering meanwhile."""
    shim, port = events_shim
    subscribers = [Subscriber(shim) for _ in range(MAX_SUBSCRIBERS)]
    try:
        wait_subscribers(port, MAX_SUBSCRIBERS)
        refused = Subscriber(shim)
        deadline = time.monotonic() + 10
        while refused.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refused.error is not None
        assert refused.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"{MAX_SUBSCRIBERS} event subscribers" in (refused.error.details() or "")
        version = shim.runtime().Version(api_pb2.VersionRequest(), timeout=5)
        assert version.runtime_name == "cri-shim"
        assert shim.list_pods() is not None
    finally:
        for subscriber in subscribers:
            subscriber.close()
    wait_subscribers(port, 0)
