"""A real kubelet v1.34 runs static pods on cri-shim (issue 8). One kubelet and one shim serve
the whole module: every pod is placed at once, each test checks one scenario through kubelet's
view (/pods: phase, podIP, container states, restart counts) and through the host (the pod's
network namespace, Docker, the shim's CRI answers). The shim restart and the removal of every
manifest come last, in that order."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from cri_api import api_pb2
from tests.e2e.harness import infra_pid, leftovers, netns_addresses
from tests.kubelet import pods
from tests.kubelet.conftest import Node
from tests.kubelet.harness import (
    condition,
    container_id,
    container_running,
    container_status,
    http_answers,
    phase,
    pod_ip,
    port_free,
    restart_count,
    rpc_error_lines,
    unimplemented_rpcs,
    wait_for,
    wait_restarted,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

NS = pods.NAMESPACE
# The optional RPCs kubelet 1.34 may call and falls back from on UNIMPLEMENTED.
OPTIONAL_RPCS = {
    "RuntimeService/GetContainerEvents",  # evented PLEG (off by default): relist instead
    "RuntimeService/ListMetricDescriptors",  # PodAndContainerStatsFromCRI: cAdvisor instead
    "RuntimeService/ListPodSandboxMetrics",
    "RuntimeService/UpdatePodSandboxResources",  # 1.33+, in-place resize: best effort
}
START_TIMEOUT_S = 180


@dataclass
class Scenario:
    node: Node
    hostnet_port: int
    host_port: int
    ip_of: dict[str, str] = field(default_factory=dict)


def _free_ports(count: int, start: int = 18080) -> list[int]:
    found: list[int] = []
    port = start
    while len(found) < count:
        if port_free(port):
            found.append(port)
        port += 1
    return found


@pytest.fixture(scope="module")
def scenario(node: Node) -> Scenario:
    hostnet_port, host_port = _free_ports(2)
    for manifest in (
        pods.web(),
        pods.crash_loop(),
        pods.duo(),
        pods.liveness(),
        pods.readiness(),
        pods.host_network(hostnet_port),
        pods.host_port(host_port),
        pods.logger(),
        pods.guaranteed(),
    ):
        node.kubelet.add_manifest(manifest)
    return Scenario(node, hostnet_port, host_port)


def running_pod(s: Scenario, name: str, *containers: str, ready: bool = False) -> dict[str, Any]:
    """kubelet's view of pod `name` once it is Running with these containers running."""

    def probe() -> dict[str, Any] | None:
        pod = s.node.kubelet.pod(name)
        if phase(pod) != "Running" or not all(container_running(pod, c) for c in containers):
            return None
        if ready and not condition(pod, "Ready"):
            return None
        return pod

    try:
        return wait_for(f"pod {name} running", probe, START_TIMEOUT_S)
    except TimeoutError as err:
        pod = s.node.kubelet.pod(name)
        raise AssertionError(f"{err}\nkubelet's view: {json.dumps(pod, indent=1)}") from None


def exec_in(s: Scenario, cid: str, *cmd: str) -> api_pb2.ExecSyncResponse:
    return s.node.shim.runtime().ExecSync(
        api_pb2.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=10), timeout=30
    )


def logs_containing(s: Scenario, name: str, container: str, needle: str) -> str:
    """kubelet's /containerLogs of the container, once they hold `needle`."""

    def probe() -> str | None:
        text = s.node.kubelet.container_logs(NS, name, container)
        return text if needle in text else None

    return wait_for(f"{needle!r} in {name}/{container}'s logs", probe, 60)


def ready_sandbox(s: Scenario, name: str) -> api_pb2.PodSandbox:
    ready = [
        p for p in s.node.sandboxes_of(name) if p.state == api_pb2.PodSandboxState.SANDBOX_READY
    ]
    assert len(ready) == 1, f"{name}: the shim lists {len(ready)} READY sandboxes"
    return ready[0]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


_REMOVED = re.compile(r'"RemoveContainer" containerID="([0-9a-f]+)"')
_NOT_FOUND_ID = re.compile(r"code = NotFound desc = container '([0-9a-f]+)' not found")


def cri_errors(log: str, since: int = 0, stopping: bool = False) -> list[str]:
    """The failed CRI calls in kubelet's log (from offset `since`) that the runtime is to
    blame for. Not counted: UNIMPLEMENTED (checked apart), and NotFound for a container that
    kubelet had already removed itself: its pod_container_deletor and its GC both delete the
    containers of a pod that went, and the loser's ContainerStatus finds nothing
    (kubelet logs "DeleteContainer returned error"; containerd answers the same NotFound).
    While pods are `stopping`, neither is a ReopenContainerLog refused for a container that
    exited between kubelet's log rotation listing it as running and renaming its file
    (containerd and cri-dockerd refuse too: "container is not running"; kubelet renames the
    file back)."""
    # kubelet logs "RemoveContainer" as it starts one: a second start for the same container
    # means the first had gone through.
    removals: dict[str, int] = {}
    errors = []
    for line in log.splitlines(keepends=True):
        since -= len(line)
        if m := _REMOVED.search(line):
            removals[m.group(1)] = removals.get(m.group(1), 0) + 1
        if since > 0 or not rpc_error_lines(line) or "code = Unimplemented" in line:
            continue
        gone = _NOT_FOUND_ID.search(line)
        if gone and removals.get(gone.group(1), 0) >= 2:
            continue
        if stopping and "code = FailedPrecondition" in line and "is exited" in line:
            continue
        errors.append(line.rstrip())
    return errors


# ---- 1. a web server pod --------------------------------------------------------------------


def test_web_pod_runs_ready_and_answers_on_its_ip(scenario: Scenario) -> None:
    pod = running_pod(scenario, "web", "web", ready=True)
    ip = pod_ip(pod)
    assert ip and ipaddress.ip_address(ip) in ipaddress.ip_network(scenario.node.plan.subnet)
    status = container_status(pod, "web")
    assert status and status["restartCount"] == 0 and status["ready"] is True
    # The host's view: the IP is eth0's inside the pod's network namespace.
    sandbox = ready_sandbox(scenario, "web")
    assert netns_addresses(infra_pid(sandbox.id)) == [ip]
    assert scenario.node.shim.status(sandbox.id).status.network.ip == ip
    body = wait_for(f"HTTP on {ip}", lambda: http_answers(f"http://{ip}/"), 60)
    assert pods.WEB_BODY in body
    scenario.ip_of["web"] = ip


def test_pod_status_names_the_image(scenario: Scenario) -> None:
    """kubelet copies ContainerStatus.image.image into the pod's status; containerd and
    cri-dockerd answer the image's tag there, not the id kubelet created the container with."""
    status = container_status(running_pod(scenario, "web", "web"), "web")
    assert status and status["image"] == pods.TEST_IMAGE, status
    assert status["imageID"], status


# ---- 3. an init container, then two containers on localhost ---------------------------------


def test_init_container_then_two_containers_share_localhost(scenario: Scenario) -> None:
    pod = running_pod(scenario, "duo", "server", "client")
    init = container_status(pod, "init", init=True)
    assert init, pod["status"]
    done = init["state"].get("terminated")
    assert done and done["exitCode"] == 0 and done["reason"] == "Completed", init
    for name in ("server", "client"):
        app = container_status(pod, name)
        assert app
        started = _time(app["state"]["running"]["startedAt"])
        assert _time(done["finishedAt"]) <= started, (init, app)
    # The client reaches the server on 127.0.0.1:8080 of the pod's shared namespace ...
    logs = logs_containing(scenario, "duo", "client", pods.INIT_BODY)
    assert "FAILED" not in logs.split(pods.INIT_BODY, 1)[1]
    # ... which the node does not: the server listens on the pod's loopback only.
    ip = pod_ip(pod)
    assert ip and http_answers(f"http://{ip}:8080/index.html", timeout=2) is None
    sandbox = ready_sandbox(scenario, "duo")
    infra = infra_pid(sandbox.id)
    for c in scenario.node.containers_of("duo", "server") + scenario.node.containers_of(
        "duo", "client"
    ):
        if c.state == api_pb2.ContainerState.CONTAINER_RUNNING:
            pid = infra_pid(c.id)
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/proc/{infra}/ns/net").st_ino


# ---- 4. exec probes --------------------------------------------------------------------------


def test_exec_liveness_probe_failing_restarts_the_container(scenario: Scenario) -> None:
    pod = running_pod(scenario, "live", "live")
    assert restart_count(pod, "live") == 0, pod["status"]
    first = container_id(pod, "live")
    assert first
    time.sleep(3)  # a few passing probes first
    assert restart_count(scenario.node.kubelet.pod("live"), "live") == 0
    assert exec_in(scenario, first, "rm", "-f", "/tmp/alive").exit_code == 0

    def restarted() -> dict[str, Any] | None:
        pod = scenario.node.kubelet.pod("live")
        new = container_id(pod, "live")
        if restart_count(pod, "live") >= 1 and container_running(pod, "live") and new != first:
            return pod
        return None

    pod = wait_for("the liveness restart", restarted, 90)
    assert restart_count(pod, "live") == 1
    new = container_id(pod, "live")
    by_id = {c.id: c for c in scenario.node.containers_of("live", "live")}
    assert new in by_id and by_id[new].metadata.attempt == 1, by_id
    # The new instance passes its probe again: no second restart.
    time.sleep(4)
    assert restart_count(scenario.node.kubelet.pod("live"), "live") == 1


def test_exec_readiness_probe_gates_ready(scenario: Scenario) -> None:
    pod = running_pod(scenario, "ready", "ready")
    cid = container_id(pod, "ready")
    assert cid
    for _ in range(5):
        now = scenario.node.kubelet.pod("ready")
        assert not condition(now, "Ready"), now and now["status"]
        status = container_status(now, "ready")
        assert status and status["ready"] is False
        time.sleep(1)
    assert exec_in(scenario, cid, "touch", "/tmp/ready").exit_code == 0
    pod = wait_for(
        "Ready",
        lambda: p if condition(p := scenario.node.kubelet.pod("ready"), "Ready") else None,
        60,
    )
    assert restart_count(pod, "ready") == 0


# ---- 5. host network, host port ---------------------------------------------------------------


def _host_addresses() -> set[str]:
    out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    return {a["local"] for link in json.loads(out) for a in link.get("addr_info", [])}


def test_host_network_pod(scenario: Scenario) -> None:
    pod = running_pod(scenario, "hostnet", "web")
    assert pod["spec"]["hostNetwork"] is True
    # A host-network pod's IPs are the node's, which a kubelet without an API server never
    # fills in (kubelet_pods.go generateAPIPodStatus: `if kl.kubeClient != nil`).
    assert pod_ip(pod) in (None, "") or pod_ip(pod) in _host_addresses(), pod["status"]
    sandbox = ready_sandbox(scenario, "hostnet")
    options = scenario.node.shim.status(sandbox.id).status.linux.namespaces.options
    assert options.network == api_pb2.NamespaceMode.NODE
    cid = container_id(pod, "web")
    assert cid
    host_ns = os.stat("/proc/self/ns/net").st_ino
    assert os.stat(f"/proc/{infra_pid(cid)}/ns/net").st_ino == host_ns
    url = f"http://127.0.0.1:{scenario.hostnet_port}/"
    assert pods.WEB_BODY in wait_for(url, lambda: http_answers(url), 60)


def test_host_port_reachable_on_loopback(scenario: Scenario) -> None:
    pod = running_pod(scenario, "hostport", "web")
    ip = pod_ip(pod)
    assert ip and ipaddress.ip_address(ip) in ipaddress.ip_network(scenario.node.plan.subnet)
    url = f"http://127.0.0.1:{scenario.host_port}/"
    assert pods.WEB_BODY in wait_for(url, lambda: http_answers(url), 60)


# ---- 6. logs and their rotation ---------------------------------------------------------------

_LINE = re.compile(rb"line (\d+) ")


def _log_dir(s: Scenario, name: str, container: str) -> str:
    pod = s.node.kubelet.pod(name)
    assert pod
    uid = pod["metadata"]["uid"]
    full = s.node.kubelet.pod_name(name)
    return os.path.join(s.node.kubelet.pod_logs_dir, f"{NS}_{full}_{uid}", container)


def _last_line_number(s: Scenario) -> int:
    """The highest "line N" in the logger's current CRI log file."""
    directory = _log_dir(s, "logger", "logger")
    current = sorted(f for f in os.listdir(directory) if f.endswith(".log"))[-1]
    with open(os.path.join(directory, current), "rb") as f:
        numbers = [int(n) for n in _LINE.findall(f.read())]
    return max(numbers, default=0)


def test_container_logs_and_rotation(scenario: Scenario) -> None:
    running_pod(scenario, "logger", "logger")
    kubelet = scenario.node.kubelet
    # The 1 KiB file holds ~12 lines: ask only for a line, not for a given one.
    text = logs_containing(scenario, "logger", "logger", pods.LOG_PAD)
    assert re.search(r"line \d+ " + pods.LOG_PAD, text), text
    directory = _log_dir(scenario, "logger", "logger")
    # containerLogMaxSize 1Ki: kubelet renames 0.log to 0.log.<time> and asks the shim to
    # reopen (ReopenContainerLog); older rotated files are compressed, then dropped.
    rotated = wait_for(
        "a rotated log",
        lambda: [f for f in os.listdir(directory) if f.startswith("0.log.")] or None,
        90,
    )
    assert rotated
    before = _last_line_number(scenario)
    wait_for("the log to go on", lambda: _last_line_number(scenario) > before + 5, 30)
    numbers = [
        int(n) for n in re.findall(r"line (\d+) ", kubelet.container_logs(NS, "logger", "logger"))
    ]
    assert numbers and numbers[-1] > before
    log = kubelet.log()
    for failure in ("reopen container log failed", "failed to reopen container log"):
        assert failure not in log.lower()
    assert "failed to rotate log" not in log.lower()


# ---- 7. a Guaranteed pod --------------------------------------------------------------------


def test_guaranteed_pod_runs_with_its_limits(scenario: Scenario) -> None:
    pod = running_pod(scenario, "guaranteed", "main")
    assert pod["status"]["qosClass"] == "Guaranteed"
    cid = container_id(pod, "main")
    assert cid
    inspect = subprocess.run(
        ["/usr/bin/docker", "inspect", "-f", "{{json .HostConfig}}", cid],
        capture_output=True,
        text=True,
        check=True,
    )
    host_config = json.loads(inspect.stdout)
    assert host_config["Memory"] == 64 * 1024 * 1024
    # kubelet asks for -997, which this kernel refuses: the shim clamps it to what it allows.
    assert host_config["OomScoreAdj"] >= 0 or _negative_oom_allowed()
    with open(f"/proc/{infra_pid(cid)}/oom_score_adj") as f:
        assert int(f.read()) == host_config["OomScoreAdj"]


def _negative_oom_allowed() -> bool:
    probe = ["/bin/sh", "-c", "echo -997 > /proc/self/oom_score_adj"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


# ---- 2. a crash-looping container -----------------------------------------------------------


def test_crash_loop_restarts_with_back_off_and_gc(scenario: Scenario) -> None:
    node = scenario.node

    last = wait_restarted(node.kubelet, "crash", "crash", times=2, timeout=180)
    assert last.get("exitCode") == 3, last
    # Each restart is a new CreateContainer with attempt + 1, never a restart of the old one.
    attempts = {c.metadata.attempt for c in node.containers_of("crash", "crash")}
    assert max(attempts) >= 2, attempts
    assert "CrashLoopBackOff" in node.kubelet.log() or "back-off" in node.kubelet.log()
    first_id = next(
        (c.id for c in node.containers_of("crash", "crash") if c.metadata.attempt == 0), None
    )

    # kubelet's container GC (once a minute, keeps one dead instance per container) removes
    # the old instances through RemoveContainer.
    def collected() -> bool:
        instances = node.containers_of("crash", "crash")
        return all(c.metadata.attempt > 0 for c in instances) and len(instances) <= 2

    wait_for("kubelet's GC of old instances", collected, 180)
    if first_id:
        gone = subprocess.run(
            ["/usr/bin/docker", "inspect", first_id], capture_output=True, check=False
        )
        assert gone.returncode != 0, f"{first_id} is still in Docker"
    count = restart_count(node.kubelet.pod("crash"), "crash")
    # The restart count grows by back-off, not at every exit (1 s apart): 10 s, 20 s, 40 s ...
    assert 2 <= count < 10


def test_stats_summary_lists_the_pods(scenario: Scenario) -> None:
    """/stats/summary on 10250: kubelet's CRI stats provider (ListPodSandboxStats,
    ListContainerStats, ImageFsInfo) over cri-shim."""
    running_pod(scenario, "web", "web")
    summary = json.loads(scenario.node.kubelet.get("/stats/summary"))
    by_name = {p["podRef"]["name"]: p for p in summary.get("pods") or []}
    web = by_name.get(scenario.node.kubelet.pod_name("web"))
    assert web, sorted(by_name)
    containers = {c["name"]: c for c in web.get("containers") or []}
    assert "web" in containers, web
    assert containers["web"]["memory"].get("workingSetBytes", 0) > 0, containers["web"]
    assert summary["node"]["runtime"]["imageFs"]["usedBytes"] > 0, summary["node"]["runtime"]


# ---- kubelet's log of the healthy run ---------------------------------------------------------


UNIMPLEMENTED_SEEN: set[str] = set()


def test_kubelet_log_has_no_cri_error(scenario: Scenario) -> None:
    log = scenario.node.kubelet.log()
    unimplemented = unimplemented_rpcs(log)
    UNIMPLEMENTED_SEEN.update(unimplemented)
    print(f"UNIMPLEMENTED RPCs kubelet called: {sorted(unimplemented)}")
    assert unimplemented <= OPTIONAL_RPCS, unimplemented - OPTIONAL_RPCS
    errors = cri_errors(log)
    assert not errors, "\n".join(errors[:20])
    # Before its first relist kubelet says "pleg has yet to be successful"; never after.
    unhealthy = [line for line in log.splitlines() if "PLEG is not healthy" in line]
    assert all("pleg has yet to be successful" in line for line in unhealthy), unhealthy


# ---- 8. cri-shim SIGKILLed and restarted -----------------------------------------------------

STABLE = ("web", "duo", "live", "ready", "hostnet", "hostport", "logger", "guaranteed")


def _snapshot(s: Scenario) -> dict[str, Any]:
    shot: dict[str, Any] = {}
    for name in STABLE:
        pod = s.node.kubelet.pod(name)
        assert pod, name
        statuses = pod["status"].get("containerStatuses") or []
        shot[name] = {
            "sandboxes": sorted(p.id for p in s.node.sandboxes_of(name)),
            "containers": {c["name"]: (c.get("containerID"), c["restartCount"]) for c in statuses},
            "phase": phase(pod),
        }
    shot["crash"] = {"sandboxes": sorted(p.id for p in s.node.sandboxes_of("crash"))}
    return shot


def test_shim_sigkill_and_restart_restarts_no_pod(scenario: Scenario) -> None:
    node = scenario.node
    for name in STABLE:
        running_pod(scenario, name)
    node.remember_sandboxes()
    before = _snapshot(scenario)
    lines_before = _last_line_number(scenario)
    node.shim.kill(signal.SIGKILL)
    time.sleep(3)
    node.shim.start()
    # kubelet notices nothing: its relist (1 s) sees the same sandboxes and containers.
    wait_for("kubelet healthy again", lambda: node.kubelet.get("/healthz") == b"ok", 60)
    time.sleep(20)
    after = _snapshot(scenario)
    assert after == before
    assert pod_ip(node.kubelet.pod("web")) == scenario.ip_of.get(
        "web", pod_ip(node.kubelet.pod("web"))
    )
    # Logs continue: the logger's lines go on past the ones written before the kill.
    wait_for("the log to go on", lambda: _last_line_number(scenario) > lines_before + 20, 60)


# ---- 9. removing the manifests ----------------------------------------------------------------


def test_removing_manifests_stops_and_collects_everything(scenario: Scenario) -> None:
    node = scenario.node
    node.remember_sandboxes()
    offset = len(node.kubelet.log())
    node.kubelet.remove_all_manifests()
    wait_for("kubelet to drop the pods", lambda: node.kubelet.pods() == [], 120)

    def nothing_left() -> bool:
        return not node.shim.list_pods() and not node.shim.list_containers()

    # Stop at once; RemoveContainer and RemovePodSandbox from kubelet's GC, once a minute.
    try:
        wait_for("kubelet's GC to remove every sandbox and container", nothing_left, 240)
    except TimeoutError as err:
        pods_left = [(p.metadata.name, p.state) for p in node.shim.list_pods()]
        ctrs_left = [(c.metadata.name, c.state) for c in node.shim.list_containers()]
        raise AssertionError(f"{err}: {pods_left} {ctrs_left}") from None
    left = leftovers(node.shim, node.plan, node.sandbox_ids)
    assert left.empty(), left
    checkpoints = os.path.join(node.shim.root, "sandboxes")
    assert not os.path.isdir(checkpoints) or not os.listdir(checkpoints)
    assert node.kubelet.container_log_links() == []
    errors = cri_errors(node.kubelet.log(), since=offset, stopping=True)
    assert not errors, "\n".join(errors[:20])
