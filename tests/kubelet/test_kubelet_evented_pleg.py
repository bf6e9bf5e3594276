"""kubelet v1.34 with the EventedPLEG feature gate on (its relist then runs every 300 s only,
so pod state reaches kubelet through cri-shim's GetContainerEvents stream): kubelet
subscribes and stays subscribed, a pod starts, and a container that dies on its own is seen
dead and restarted, as with the relisting PLEG."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.e2e.test_metrics import scrape
from tests.kubelet import pods
from tests.kubelet.conftest import Node
from tests.kubelet.harness import container_running, phase, wait_for, wait_restarted

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


METRICS_PORT = _free_port()
# Read by tests/kubelet/conftest.py's node fixture.
KUBELET_OVERRIDES = {"featureGates": {"EventedPLEG": True}}
SHIM_ARGS = ["--metrics-address", f"127.0.0.1:{METRICS_PORT}"]
START_TIMEOUT_S = 180


def _metric(name: str, **labels: str) -> float:
    samples = scrape(METRICS_PORT).get(name, [])
    return sum(v for _, got, v in samples if all(got.get(k) == want for k, want in labels.items()))


def _shim_log(node: Node) -> str:
    """The whole log (Shim.log() keeps only its end)."""
    with open(node.shim.log_path, errors="replace") as f:
        return f.read()


@pytest.fixture(scope="module")
def evented(node: Node) -> Node:
    node.kubelet.add_manifest(pods.web("evweb"))
    node.kubelet.add_manifest(pods.crash_loop("evcrash"))
    return node


def test_kubelet_subscribes_to_container_events(evented: Node) -> None:
    wait_for(
        "kubelet's GetContainerEvents stream",
        lambda: _metric("cri_shim_container_events_subscribers") == 1,
        60,
    )
    assert "GetContainerEvents: subscriber connected" in _shim_log(evented)


def test_pod_starts_on_events(evented: Node) -> None:
    def running() -> dict[str, Any] | None:
        pod = evented.kubelet.pod("evweb")
        return pod if phase(pod) == "Running" and container_running(pod, "web") else None

    wait_for("pod evweb running", running, START_TIMEOUT_S)
    assert _metric("cri_shim_container_events_total", type="started") >= 2


def test_container_dying_on_its_own_is_restarted(evented: Node) -> None:
    # Back-off 10 s then 20 s: well within the wait, far within the 300 s relist period.
    last = wait_restarted(evented.kubelet, "evcrash", "crash", times=2, timeout=150)
    assert last.get("exitCode") == 3, last
    assert _metric("cri_shim_container_events_total", type="stopped") >= 2


def test_stream_stayed_up(evented: Node) -> None:
    """kubelet never fell back to relisting: its one stream is still there, none dropped."""
    assert _metric("cri_shim_container_events_subscribers") == 1
    assert _metric("cri_shim_container_events_dropped_subscribers_total") == 0
    assert _shim_log(evented).count("GetContainerEvents: subscriber connected") == 1
