"""Containers end to end: a real cri-shim over real Docker, driven by gRPC and the real crictl.
Every test leaves no container behind (the shim fixture's finalizer checks and cleans)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cri_api import api_pb2
from shim.process import stop_process
from shim.servicer import LIFECYCLE_LIMIT
from tests.e2e.conftest import Pods
from tests.e2e.harness import (
    TEST_IMAGE,
    Shim,
    container_config,
    details,
    owned_containers,
    pod_config,
    tool,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pod(shim: Shim, pods: Pods, tmp_path: Path) -> Iterator[tuple[str, api_pb2.PodSandboxConfig]]:
    config = pod_config(log_directory=str(tmp_path / "logs"))
    sandbox_id = pods.add(shim.run_pod(config))
    yield sandbox_id, config


def _image_id() -> str:
    return subprocess.run(
        ["/usr/bin/docker", "image", "inspect", "-f", "{{.Id}}", TEST_IMAGE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _cri_lines(path: str) -> list[tuple[str, str, str]]:
    """(stream, tag, content) of every line of a CRI log file."""
    out = []
    with open(path) as f:
        for line in f:
            _stamp, stream, tag, content = line.rstrip("\n").split(" ", 3)
            out.append((stream, tag, content))
    return out


def test_lifecycle_status_and_log(shim: Shim, pod: tuple[str, api_pb2.PodSandboxConfig]) -> None:
    sandbox_id, sandbox_config = pod
    config = container_config(
        "app",
        ["/bin/sh", "-c", "echo out-1; echo err-1 >&2; printf tail"],
        log_path="app/0.log",
        labels={"tier": "web"},
        annotations={"note": "kept as is"},
    )
    container_id = shim.create_container(sandbox_id, config, sandbox_config)
    created = shim.container_status(container_id).status
    assert created.state == api_pb2.CONTAINER_CREATED
    assert created.metadata.name == "app"
    assert dict(created.labels) == {"tier": "web"}
    assert dict(created.annotations) == {"note": "kept as is"}
    # One image id everywhere (critest's Image Identifier Consistency).
    assert created.image_id == created.image_ref == _image_id()
    log_path = os.path.join(sandbox_config.log_directory, "app/0.log")
    assert created.log_path == log_path

    shim.start_container(container_id)
    exited = shim.wait_container_state(container_id, api_pb2.CONTAINER_EXITED)
    assert exited.state == api_pb2.CONTAINER_EXITED
    assert (exited.exit_code, exited.reason) == (0, "Completed")
    assert exited.started_at >= exited.created_at > 0
    # Docker stamps StartedAt after the process began, so a container that exits at once may
    # show FinishedAt a hair before StartedAt: only their presence is checked.
    assert exited.finished_at > 0
    # EXITED means the log is complete; output without a newline ends as a partial line.
    # (stdout and stderr are two pipes: their relative order is not defined.)
    lines = _cri_lines(log_path)
    assert [line for line in lines if line[0] == "stdout"] == [
        ("stdout", "F", "out-1"),
        ("stdout", "P", "tail"),
    ]
    assert [line for line in lines if line[0] == "stderr"] == [("stderr", "F", "err-1")]
    listed = shim.list_containers(pod_sandbox_id=sandbox_id)
    assert [(c.id, c.state, c.image_id) for c in listed] == [
        (container_id, api_pb2.CONTAINER_EXITED, _image_id())
    ]
    verbose = json.loads(shim.container_status(container_id, verbose=True).info["info"])
    assert verbose["sandboxID"] == sandbox_id

    shim.remove_container(container_id)
    assert shim.list_containers() == []
    with pytest.raises(grpc.RpcError) as caught:
        shim.container_status(container_id)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # Stop and remove are idempotent.
    shim.stop_container(container_id)
    shim.remove_container(container_id)


def test_stop_honours_timeout_then_kills(
    shim: Shim, pod: tuple[str, api_pb2.PodSandboxConfig]
) -> None:
    sandbox_id, sandbox_config = pod
    # A process that ignores SIGTERM: only the SIGKILL after the timeout ends it.
    config = container_config(
        "stubborn", ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done"]
    )
    container_id = shim.create_container(sandbox_id, config, sandbox_config)
    shim.start_container(container_id)
    started = time.monotonic()
    shim.stop_container(container_id, timeout=2)
    took = time.monotonic() - started
    status = shim.container_status(container_id).status
    assert status.state == api_pb2.CONTAINER_EXITED
    assert status.exit_code == 137
    assert 1.5 <= took < 15


def test_a_container_that_dies_is_listed_exited_without_asking(
    shim: Shim, pod: tuple[str, api_pb2.PodSandboxConfig]
) -> None:
    """ListContainers is answered from memory; Docker's events keep it current."""
    sandbox_id, sandbox_config = pod
    config = container_config("short", ["/bin/sh", "-c", "sleep 1; exit 7"])
    container_id = shim.create_container(sandbox_id, config, sandbox_config)
    shim.start_container(container_id)
    deadline = time.monotonic() + 20
    state = None
    while time.monotonic() < deadline:
        (listed,) = shim.list_containers(id=container_id[:12])
        state = listed.state
        if state == api_pb2.CONTAINER_EXITED:
            break
        time.sleep(0.1)
    assert state == api_pb2.CONTAINER_EXITED
    status = shim.container_status(container_id).status
    assert (status.exit_code, status.reason) == (7, "Error")
    running = shim.list_containers(
        state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_RUNNING)
    )
    assert running == []


def test_status_reports_resources_after_every_update(
    shim: Shim, pod: tuple[str, api_pb2.PodSandboxConfig]
) -> None:
    """ContainerStatus answers from the record's last inspect: an UpdateContainerResources
    through cri-shim and a `docker update` behind its back must both show up in it."""
    sandbox_id, sandbox_config = pod
    config = container_config("limits", ["/bin/sleep", "600"])
    container_id = shim.create_container(sandbox_id, config, sandbox_config)
    shim.start_container(container_id)
    shim.runtime().UpdateContainerResources(
        api_pb2.UpdateContainerResourcesRequest(
            container_id=container_id,
            linux=api_pb2.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=64 << 20),
        ),
        timeout=30,
    )
    linux = shim.container_status(container_id).status.resources.linux
    assert (linux.cpu_shares, linux.memory_limit_in_bytes) == (512, 64 << 20)
    subprocess.run(
        ["/usr/bin/docker", "update", "--cpu-shares", "256", container_id],
        capture_output=True,
        check=True,
    )
    deadline = time.monotonic() + 10
    while shim.container_status(container_id).status.resources.linux.cpu_shares != 256:
        assert time.monotonic() < deadline, "ContainerStatus never saw the docker update"
        time.sleep(0.05)
    verbose = shim.container_status(container_id, verbose=True).status.resources.linux
    assert verbose.cpu_shares == 256


def test_failures_leave_nothing(shim: Shim, pod: tuple[str, api_pb2.PodSandboxConfig]) -> None:
    sandbox_id, sandbox_config = pod
    before = set(owned_containers(shim))
    missing = container_config("x", ["/bin/true"])
    missing.image.image = "cri-shim.invalid/none:1"
    cases = [
        (sandbox_id, missing, grpc.StatusCode.NOT_FOUND),
        ("f" * 64, container_config("x", ["/bin/true"]), grpc.StatusCode.NOT_FOUND),
        (
            sandbox_id,
            container_config(
                "x",
                ["/bin/true"],
                linux=api_pb2.LinuxContainerConfig(
                    security_context=api_pb2.LinuxContainerSecurityContext(
                        run_as_group=api_pb2.Int64Value(value=5)
                    )
                ),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            sandbox_id,
            container_config("x", ["/bin/true"], log_path="../escape.log"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for target, config, code in cases:
        with pytest.raises(grpc.RpcError) as caught:
            shim.create_container(target, config, sandbox_config)
        assert caught.value.code() == code, details(caught.value)
    assert set(owned_containers(shim)) == before
    assert shim.list_containers() == []

    # A command that does not exist: StartContainer fails, the status says why, and removal
    # leaves nothing.
    bad = shim.create_container(
        sandbox_id, container_config("bad", ["/no/such/binary"]), sandbox_config
    )
    with pytest.raises(grpc.RpcError) as caught:
        shim.start_container(bad)
    assert "/no/such/binary" in details(caught.value)
    status = shim.container_status(bad).status
    assert status.state == api_pb2.CONTAINER_EXITED
    assert status.reason == "ContainerCannotRun"
    assert "/no/such/binary" in status.message
    shim.remove_container(bad)
    assert set(owned_containers(shim)) == before


def test_remove_pod_sandbox_removes_its_running_containers(
    shim: Shim, pod: tuple[str, api_pb2.PodSandboxConfig]
) -> None:
    sandbox_id, sandbox_config = pod
    ids = [
        shim.create_container(
            sandbox_id, container_config(f"c{i}", ["sleep", "3600"]), sandbox_config
        )
        for i in range(2)
    ]
    for container_id in ids:
        shim.start_container(container_id)
    shim.stop_pod(sandbox_id)
    assert {c.state for c in shim.list_containers()} == {api_pb2.CONTAINER_EXITED}
    shim.remove_pod(sandbox_id)
    assert shim.list_containers() == []
    assert owned_containers(shim) == []


def test_containers_share_the_pod_network(
    shim: Shim, pod: tuple[str, api_pb2.PodSandboxConfig]
) -> None:
    sandbox_id, sandbox_config = pod
    server = shim.create_container(
        sandbox_id,
        container_config(
            "server",
            ["/bin/sh", "-c", "mkdir -p /w && echo hi > /w/index.html && httpd -f -p 8080 -h /w"],
        ),
        sandbox_config,
    )
    shim.start_container(server)
    client = shim.create_container(
        sandbox_id, container_config("client", ["sleep", "3600"]), sandbox_config
    )
    shim.start_container(client)
    deadline = time.monotonic() + 10
    while True:
        response = shim.runtime().ExecSync(
            api_pb2.ExecSyncRequest(
                container_id=client,
                cmd=["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
                timeout=5,
            ),
            timeout=30,
        )
        if response.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.stdout == b"hi\n"
    pod_ip = shim.status(sandbox_id).status.network.ip
    ip_out = shim.runtime().ExecSync(
        api_pb2.ExecSyncRequest(
            container_id=client, cmd=["ip", "-o", "-4", "addr", "show", "eth0"]
        ),
        timeout=30,
    )
    assert f"inet {pod_ip}/" in ip_out.stdout.decode()


def test_reopen_container_log(shim: Shim, pod: tuple[str, api_pb2.PodSandboxConfig]) -> None:
    sandbox_id, sandbox_config = pod
    config = container_config(
        "writer",
        ["/bin/sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done"],
        log_path="writer/0.log",
    )
    container_id = shim.create_container(sandbox_id, config, sandbox_config)
    shim.start_container(container_id)
    path = os.path.join(sandbox_config.log_directory, "writer/0.log")
    time.sleep(0.5)
    os.rename(path, path + ".1")  # what kubelet's rotation does
    shim.runtime().ReopenContainerLog(
        api_pb2.ReopenContainerLogRequest(container_id=container_id), timeout=30
    )
    assert os.path.exists(path)  # at once, as kubelet expects
    old_size = os.path.getsize(path + ".1")
    time.sleep(1)
    assert os.path.getsize(path + ".1") == old_size
    new = [int(content) for _s, _t, content in _cri_lines(path)]
    old = [int(content) for _s, _t, content in _cri_lines(path + ".1")]
    assert new and old and new[0] == old[-1] + 1
    shim.stop_container(container_id, timeout=0)
    with pytest.raises(grpc.RpcError) as caught:
        shim.runtime().ReopenContainerLog(
            api_pb2.ReopenContainerLogRequest(container_id=container_id), timeout=30
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_sigkill_while_writing_loses_and_doubles_no_line(
    shim: Shim, pod: tuple[str, api_pb2.PodSandboxConfig]
) -> None:
    """The shim is killed twice while a container writes numbered lines as fast as it can;
    Docker keeps the output meanwhile and the restarted shim resumes where the file ends."""
    sandbox_id, sandbox_config = pod
    count = 60000
    config = container_config(
        "counter",
        ["/bin/sh", "-c", f"i=0; while [ $i -lt {count} ]; do echo line-$i; i=$((i+1)); done"],
        log_path="counter/0.log",
    )
    container_id = shim.create_container(sandbox_id, config, sandbox_config)
    shim.start_container(container_id)
    path = os.path.join(sandbox_config.log_directory, "counter/0.log")
    for _ in range(2):
        time.sleep(0.7)
        shim.kill()
        time.sleep(0.3)
        shim.start()
    status = shim.wait_container_state(container_id, api_pb2.CONTAINER_EXITED, timeout=120)
    assert status.state == api_pb2.CONTAINER_EXITED
    lines = [content for _s, _t, content in _cri_lines(path)]
    assert lines == [f"line-{i}" for i in range(count)]


def test_running_containers_survive_a_shim_restart(
    shim: Shim, pod: tuple[str, api_pb2.PodSandboxConfig]
) -> None:
    sandbox_id, sandbox_config = pod
    config = container_config(
        "steady",
        ["/bin/sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done"],
        log_path="steady/0.log",
    )
    container_id = shim.create_container(sandbox_id, config, sandbox_config)
    shim.start_container(container_id)
    before = shim.container_status(container_id).status
    shim.kill()
    shim.start()
    after = shim.container_status(container_id).status
    assert after.state == api_pb2.CONTAINER_RUNNING
    assert after.started_at == before.started_at
    assert after.metadata == before.metadata and after.labels == before.labels
    path = os.path.join(sandbox_config.log_directory, "steady/0.log")
    size = os.path.getsize(path)
    time.sleep(1)
    assert os.path.getsize(path) > size  # still written after the restart


@pytest.mark.skipif(tool("crictl") is None, reason="crictl could not be installed")
def test_crictl_container_commands(shim: Shim, pods: Pods, tmp_path: Path) -> None:
    """crictl create/start/ps -a/inspect/logs/logs -f/exec -s/stop/rm/stats/statsp."""
    pod_file = tmp_path / "pod.json"
    pod_file.write_text(
        json.dumps(
            {
                "metadata": {"name": "crictl-pod", "namespace": "crishim-e2e", "uid": "crictl-uid"},
                "log_directory": str(tmp_path / "logs"),
                "linux": {},
            }
        )
    )
    ctr_file = tmp_path / "ctr.json"
    ctr_file.write_text(
        json.dumps(
            {
                "metadata": {"name": "talker"},
                "image": {"image": TEST_IMAGE},
                "command": ["/bin/sh", "-c", "echo hello; echo oops >&2; sleep 3600"],
                "log_path": "talker/0.log",
                "linux": {},
            }
        )
    )
    sandbox_id = pods.add(shim.crictl("runp", str(pod_file)).stdout.strip())
    container_id = shim.crictl("create", sandbox_id, str(ctr_file), str(pod_file)).stdout.strip()
    shim.crictl("start", container_id)
    ps = shim.crictl("ps", "-a", "-o", "json").stdout
    (listed,) = json.loads(ps)["containers"]
    assert listed["id"] == container_id and listed["state"] == "CONTAINER_RUNNING"
    inspect = json.loads(shim.crictl("inspect", container_id).stdout)
    assert inspect["status"]["state"] == "CONTAINER_RUNNING"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = shim.crictl("logs", container_id)
        if "hello" in logs.stdout and "oops" in logs.stderr:
            break
        time.sleep(0.2)
    assert "hello" in logs.stdout and "oops" in logs.stderr
    follow = subprocess.Popen(
        [str(tool("crictl")), "--runtime-endpoint", shim.endpoint, "logs", "-f", container_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        exec_out = shim.crictl("exec", "-s", container_id, "sh", "-c", "echo from-exec")
        assert exec_out.stdout.strip() == "from-exec"
        stats = json.loads(shim.crictl("stats", "-o", "json").stdout)["stats"]
        assert [s["attributes"]["id"] for s in stats] == [container_id]
        assert int(stats[0]["memory"]["workingSetBytes"]["value"]) > 0
        podstats = json.loads(shim.crictl("statsp", "-o", "json").stdout)["stats"]
        assert [s["attributes"]["id"] for s in podstats] == [sandbox_id]
        shim.crictl("stop", "-t", "1", container_id)
        out, _ = follow.communicate(timeout=30)  # logs -f ends once the container has exited
        assert "hello" in out
    finally:
        stop_process(follow, sig=signal.SIGKILL)
    shim.crictl("rm", container_id)
    assert json.loads(shim.crictl("ps", "-a", "-o", "json").stdout)["containers"] == []


def test_concurrent_creates_in_many_pods(shim: Shim, pods: Pods, tmp_path: Path) -> None:
    """Creates in different pods run side by side; each gets its own container."""
    configs = [pod_config(log_directory=str(tmp_path / f"logs{i}")) for i in range(4)]
    sandbox_ids = [pods.add(shim.run_pod(c)) for c in configs]
    created: list[str] = []
    errors: list[BaseException] = []

    def work(sid: str, config: api_pb2.PodSandboxConfig) -> None:
        try:
            for n in range(3):
                cid = shim.create_container(
                    sid, container_config(f"c{n}", ["sleep", "3600"]), config
                )
                shim.start_container(cid)
                created.append(cid)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [
        threading.Thread(target=work, args=pair) for pair in zip(sandbox_ids, configs, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    running = shim.list_containers(
        state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_RUNNING)
    )
    assert sorted(c.id for c in running) == sorted(created)
    assert len(created) == 12


def test_status_answers_while_lifecycle_calls_are_stuck(
    shim: Shim, pod: tuple[str, api_pb2.PodSandboxConfig]
) -> None:
    """More slow calls than the server has room for: the excess is refused at once, and
    Status, the lists and the status calls still answer quickly (issue 10, item 6)."""
    sandbox_id, sandbox_config = pod
    container_id = shim.create_container(
        sandbox_id, container_config("sleeper", ["sleep", "3600"]), sandbox_config
    )
    shim.start_container(container_id)
    codes: list[grpc.StatusCode] = []

    def slow() -> None:
        try:
            shim.runtime().ExecSync(
                api_pb2.ExecSyncRequest(container_id=container_id, cmd=["sleep", "6"]), timeout=60
            )
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as err:
            codes.append(err.code())

    threads = [threading.Thread(target=slow) for _ in range(LIFECYCLE_LIMIT + 8)]
    for t in threads:
        t.start()
    time.sleep(2)  # all of them are in by now
    latencies = []
    for _ in range(20):
        started = time.monotonic()
        shim.runtime().Status(api_pb2.StatusRequest(), timeout=10)
        shim.list_containers()
        shim.container_status(container_id)
        latencies.append(time.monotonic() - started)
    for t in threads:
        t.join()
    assert max(latencies) < 1.0, latencies
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 8
    assert codes.count(grpc.StatusCode.OK) >= 1
