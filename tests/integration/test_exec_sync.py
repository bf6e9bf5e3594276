"""ExecSync against the real Docker engine: output, exit codes, caps, the timeout kill, states.

The container runs `tail -f /dev/null` under Docker's init rather than `sleep 3600`: the
timeout test looks for *any* `sleep` left in the container (as critest's `pgrep sleep` does),
and a killed `sh -c` child is reparented to the container's PID 1, which must reap it or a
dead zombie would still be listed. In a pod that reaper is the pause container or the app's
init. The test image has no `pgrep`, so busybox `ps` lists the processes (zombies as
`[sleep]`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import docker
import docker.errors
import pytest

from cri_api import api_pb2
from shim.container.exec_sync import exec_sync
from shim.engine.docker_exec import MAX_OUTPUT
from shim.engine.proc_tree import in_container
from shim.errors import DeadlineError, FailedPreconditionError, NotFoundError
from shim.store.container_record import ContainerRecord, ContainerSpec, ContainerState
from shim.store.container_store import ContainerStore

pytestmark = pytest.mark.integration

IMAGE = "cri-shim.test/busybox:latest"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class FakeInfra:
    client: docker.APIClient


@dataclass
class FakeCtx:
    infra: FakeInfra
    containers: ContainerStore = field(default_factory=ContainerStore)

    def add(self, container_id: str, state: ContainerState) -> None:
        spec = ContainerSpec(
            sandbox_id="0" * 64,
            name="exec-test",
            attempt=0,
            image=IMAGE,
            image_id="",
            created_at=time.time_ns(),
        )
        self.containers.put(ContainerRecord(id=container_id, spec=spec, state=state))


@pytest.fixture(scope="module")
def client() -> Iterator[docker.APIClient]:
    if os.geteuid() != 0:
        pytest.skip("needs root (host /proc of the container's processes)")
    subprocess.run(["bash", os.path.join(REPO, "scripts/test-image.sh"), IMAGE], check=True)
    api = docker.APIClient(version="auto", timeout=60, max_pool_size=32)
    yield api
    api.close()


def _new_container(api: docker.APIClient, made: list[str], start: bool) -> str:
    created = api.create_container(
        IMAGE,
        ["tail", "-f", "/dev/null"],
        name=f"cri-shim-exec-test-{uuid.uuid4().hex[:8]}",
        host_config=api.create_host_config(init=True),
    )
    container_id = str(created["Id"])
    made.append(container_id)  # recorded before start, so a failed start is cleaned up too
    if start:
        api.start(container_id)
    return container_id


@pytest.fixture(scope="module")
def made(client: docker.APIClient) -> Iterator[list[str]]:
    """Every container this module creates, force-removed at the end whatever happened."""
    ids: list[str] = []
    yield ids
    for container_id in ids:
        with contextlib.suppress(docker.errors.NotFound):
            client.remove_container(container_id, force=True)


@pytest.fixture(scope="module")
def running(client: docker.APIClient, made: list[str]) -> str:
    return _new_container(client, made, start=True)


@pytest.fixture
def ctx(client: docker.APIClient, running: str) -> FakeCtx:
    fake = FakeCtx(FakeInfra(client))
    fake.add(running, ContainerState.RUNNING)
    return fake


def _exec(
    ctx: FakeCtx, container_id: str, cmd: list[str], timeout: int = 0
) -> api_pb2.ExecSyncResponse:
    request = api_pb2.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout)
    return exec_sync(ctx, request, deadline=time.monotonic() + 120)


def test_stdout_and_stderr_are_separate(ctx: FakeCtx, running: str) -> None:
    response = _exec(ctx, running[:12], ["sh", "-c", "echo out; echo err >&2; echo more"])
    assert (response.stdout, response.stderr, response.exit_code) == (b"out\nmore\n", b"err\n", 0)


def test_non_zero_exit_is_a_response(ctx: FakeCtx, running: str) -> None:
    assert _exec(ctx, running, ["sh", "-c", "exit 3"]).exit_code == 3


def test_a_missing_command_is_a_response_too(ctx: FakeCtx, running: str) -> None:
    response = _exec(ctx, running, ["/no/such/binary"])
    assert response.exit_code != 0


def test_output_is_capped_at_16_mib(ctx: FakeCtx, running: str) -> None:
    started = time.monotonic()
    response = _exec(ctx, running, ["sh", "-c", "head -c 20971520 /dev/zero; echo done >&2"], 30)
    assert len(response.stdout) == MAX_OUTPUT
    assert response.stderr == b"done\n"  # the rest was drained, the command finished
    assert response.exit_code == 0
    assert time.monotonic() - started < 10


def _sleeps_on_host(container_id: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm == "sleep" and in_container(int(name), container_id):
            found.append(int(name))
    return found


def test_timeout_kills_the_whole_tree(ctx: FakeCtx, running: str) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineError, match=r"in container .* timed out after 1 s") as caught:
        _exec(ctx, running, ["sh", "-c", "sleep 100 & sleep 200"], timeout=1)
    assert time.monotonic() - started < 3
    assert "sleep 100 & sleep 200" in str(caught.value)
    listing = _exec(ctx, running, ["ps"]).stdout.decode()
    assert "sleep" not in listing, listing
    assert _sleeps_on_host(running) == []


def test_the_grpc_deadline_holds_without_a_timeout(ctx: FakeCtx, running: str) -> None:
    request = api_pb2.ExecSyncRequest(container_id=running, cmd=["sleep", "100"])
    started = time.monotonic()
    with pytest.raises(DeadlineError):
        exec_sync(ctx, request, deadline=started + 0.5)
    assert time.monotonic() - started < 3
    assert _sleeps_on_host(running) == []


def test_container_not_running_in_the_store(
    client: docker.APIClient, made: list[str], ctx: FakeCtx
) -> None:
    created = _new_container(client, made, start=False)
    ctx.add(created, ContainerState.CREATED)
    with pytest.raises(FailedPreconditionError, match=created):
        _exec(ctx, created, ["true"])


def test_container_stopped_behind_the_stores_back(
    client: docker.APIClient, made: list[str], ctx: FakeCtx
) -> None:
    """A stale RUNNING record: Docker's 409 is the same FAILED_PRECONDITION."""
    stopped = _new_container(client, made, start=True)
    client.kill(stopped)
    client.wait(stopped, timeout=30)
    ctx.add(stopped, ContainerState.RUNNING)
    with pytest.raises(FailedPreconditionError, match=stopped):
        _exec(ctx, stopped, ["true"])


def test_unknown_container(ctx: FakeCtx) -> None:
    with pytest.raises(NotFoundError):
        _exec(ctx, "f" * 64, ["true"])


def test_concurrent_calls(ctx: FakeCtx, running: str) -> None:
    def one(i: int) -> api_pb2.ExecSyncResponse:
        return _exec(ctx, running, ["sh", "-c", f"echo {i}; echo e{i} >&2; exit {i}"], timeout=30)

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(one, range(10)))
    for i, response in enumerate(responses):
        assert (response.stdout, response.stderr, response.exit_code) == (
            f"{i}\n".encode(),
            f"e{i}\n".encode(),
            i,
        )


def test_no_descriptor_leaks(ctx: FakeCtx, running: str) -> None:
    _exec(ctx, running, ["true"])  # the pool's first connection exists before we count
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        _exec(ctx, running, ["true"])
    assert len(os.listdir("/proc/self/fd")) <= before + 2
