"""The stats readers against real containers: cgroup numbers agree with Docker's own one-shot
`docker stats`, a pod cgroup made by a cgroup parent is found and read, and /proc/<pid>/net/dev
shows the container's own network namespace."""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import docker
import pytest

from cri_api import api_pb2
from shim.cgroups import DEFAULT_ROOT, CgroupReader
from shim.container.stats import container_stats, list_container_stats
from shim.context import ShimContext
from shim.engine.docker_engine import DockerInfraRuntime
from shim.sandbox.stats import list_pod_sandbox_stats, parse_net_dev
from shim.stats_cache import StatsCache
from shim.store.container_record import ContainerRecord, ContainerSpec, ContainerState
from shim.store.container_store import ContainerStore
from shim.store.sandbox_record import SandboxRecord, SandboxState
from shim.store.sandbox_store import SandboxStore

IMAGE = "cri-shim.test/busybox:latest"
ENDPOINT = "unix:///var/run/docker.sock"
REPO = pathlib.Path(__file__).resolve().parents[2]
MIB = 1 << 20

Run = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def client() -> docker.APIClient:
    api = docker.APIClient(base_url=ENDPOINT, version="auto")
    # Builds the image only when it is missing or stale (the script checks its own stamp).
    subprocess.run(["bash", str(REPO / "scripts" / "test-image.sh"), IMAGE], check=True)
    return api


@pytest.fixture
def run(client: docker.APIClient) -> Iterator[Run]:
    """Starts a container and returns its inspect data; every one is removed afterwards."""
    made: list[str] = []

    def start(command: str, **host: Any) -> dict[str, Any]:
        created = client.create_container(
            IMAGE,
            ["sh", "-c", command],
            labels={"io.cri-shim.test": "stats"},
            host_config=client.create_host_config(**host),
        )
        made.append(created["Id"])
        client.start(created["Id"])
        return cast(dict[str, Any], client.inspect_container(created["Id"]))

    yield start
    for cid in reversed(made):
        _remove(client, cid)


def _remove(client: docker.APIClient, cid: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        client.remove_container(cid, force=True)


@dataclass
class FakeContext:
    store: SandboxStore
    infra: DockerInfraRuntime
    containers: ContainerStore
    stats_cache: StatsCache | None = None


@pytest.fixture
def ctx(tmp_path: pathlib.Path) -> ShimContext:
    fake = FakeContext(
        store=SandboxStore(str(tmp_path)),
        infra=DockerInfraRuntime(ENDPOINT, owner="stats-test"),
        containers=ContainerStore(),
    )
    return cast(ShimContext, fake)


def _record(data: dict[str, Any], sandbox_id: str, name: str) -> ContainerRecord:
    spec = ContainerSpec(sandbox_id, name, 0, IMAGE, data["Image"], time.time_ns())
    return ContainerRecord(
        id=data["Id"], spec=spec, state=ContainerState.RUNNING, pid=data["State"]["Pid"]
    )


def _docker_stats(client: docker.APIClient, cid: str) -> dict[str, Any]:
    return cast(dict[str, Any], client.stats(cid, stream=False, one_shot=True))


def test_cpu_matches_docker_stats(client: docker.APIClient, run: Run) -> None:
    data = run("while :; do :; done")
    reader = CgroupReader()
    paths = reader.paths_of_pid(data["State"]["Pid"])
    assert paths is not None and reader.belongs_to(paths, data["Id"])
    time.sleep(1.0)
    before = reader.usage(paths).cpu_usage_ns
    docker_ns = _docker_stats(client, data["Id"])["cpu_stats"]["cpu_usage"]["total_usage"]
    after = reader.usage(paths).cpu_usage_ns
    assert before is not None and after is not None
    # The burner never stops, so Docker's reading falls between our two.
    assert before <= docker_ns <= after
    assert before > 300_000_000  # one busy second on a 2-core VM


def test_memory_matches_docker_stats(client: docker.APIClient, run: Run) -> None:
    data = run("dd if=/dev/zero of=/dev/shm/fill bs=1M count=50 2>/dev/null; sleep 600")
    reader = CgroupReader()
    paths = reader.paths_of_pid(data["State"]["Pid"])
    assert paths is not None
    deadline = time.monotonic() + 10
    while (reader.usage(paths).memory_usage or 0) < 50 * MIB and time.monotonic() < deadline:
        time.sleep(0.1)
    ours = reader.usage(paths)
    theirs = _docker_stats(client, data["Id"])["memory_stats"]
    assert ours.memory_usage is not None and ours.working_set is not None
    assert abs(ours.memory_usage - theirs["usage"]) < 2 * MIB
    # shm pages are swap-backed, not file pages: they stay in the working set.
    assert ours.working_set >= 50 * MIB
    assert ours.page_faults is not None and ours.page_faults > 0
    assert ours.process_count == 1  # sh execs its last command: only sleep is left


def test_list_container_stats_on_real_containers(
    client: docker.APIClient, run: Run, ctx: ShimContext
) -> None:
    burner = run("while :; do :; done")
    writer = run("dd if=/dev/zero of=/tmp/blob bs=1M count=5 2>/dev/null; sleep 600")
    for data, name in ((burner, "burner"), (writer, "writer")):
        ctx.containers.put(_record(data, "sandbox-x", name))
    time.sleep(0.5)
    list_container_stats(ctx, api_pb2.ListContainerStatsRequest())
    time.sleep(1.5)
    got = {
        s.attributes.metadata.name: s
        for s in list_container_stats(ctx, api_pb2.ListContainerStatsRequest()).stats
    }
    assert set(got) == {"burner", "writer"}
    # Busy-looping holds about one core (the VM has two).
    assert 500_000_000 < got["burner"].cpu.usage_nano_cores.value < 2_100_000_000
    layer = got["writer"].writable_layer
    assert layer.used_bytes.value >= 5 * MIB
    assert layer.inodes_used.value >= 3  # the upper dir, tmp and the blob
    assert layer.fs_id.mountpoint.startswith(client.info()["DockerRootDir"])
    one = container_stats(ctx, api_pb2.ContainerStatsRequest(container_id=writer["Id"][:12]))
    assert one.stats.memory.working_set_bytes.value > 0


def _rmdir_cgroups(name: str) -> None:
    """Docker leaves a cgroup parent behind; it is empty once its containers are gone, though
    the kernel may take a moment to let go of the last child."""
    for controller in os.listdir(DEFAULT_ROOT):
        path = os.path.join(DEFAULT_ROOT, controller, name.lstrip("/"))
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:  # EBUSY
                time.sleep(0.1)


@pytest.fixture
def pod_parent(client: docker.APIClient) -> Iterator[str]:
    name = f"/cri-shim-test-pod{uuid.uuid4().hex[:8]}"
    yield name
    # This may run before `run` cleans up: the pod's containers go first.
    for c in client.containers(all=True, filters={"label": "io.cri-shim.test=stats"}):
        if client.inspect_container(c["Id"])["HostConfig"].get("CgroupParent") == name:
            _remove(client, c["Id"])
    _rmdir_cgroups(name)


def test_pod_stats_from_the_pod_cgroup_and_netns(
    client: docker.APIClient, run: Run, ctx: ShimContext, pod_parent: str
) -> None:
    infra = run("sleep 600", cgroup_parent=pod_parent)
    member = run(
        "while :; do :; done", cgroup_parent=pod_parent, network_mode=f"container:{infra['Id']}"
    )
    config = api_pb2.PodSandboxConfig()
    config.linux.cgroup_parent = pod_parent
    ctx.store.save(
        SandboxRecord(
            id=infra["Id"],
            name="pod",
            namespace="ns",
            uid="u",
            attempt=0,
            created_at=1,
            config_b64=base64.b64encode(config.SerializeToString()).decode(),
            state=SandboxState.READY,
        )
    )
    ctx.containers.put(_record(member, infra["Id"], "member"))
    time.sleep(1.0)
    (pod,) = list_pod_sandbox_stats(ctx, api_pb2.ListPodSandboxStatsRequest()).stats
    linux = pod.linux
    assert linux.process.process_count.value == 2  # the infra's sleep and the member's sh
    assert linux.cpu.usage_core_nano_seconds.value > 300_000_000
    member_stats = linux.containers[0]
    assert member_stats.attributes.id == member["Id"]
    # The pod is read a few ms before its member, while the member keeps burning.
    pod_cpu = linux.cpu.usage_core_nano_seconds.value
    assert pod_cpu >= 0.9 * member_stats.cpu.usage_core_nano_seconds.value
    # The counters are those of the pod's namespace: the same as eth0's inside it.
    assert linux.network.default_interface.name == "eth0"
    inside = client.exec_create(infra["Id"], ["cat", "/sys/class/net/eth0/statistics/rx_bytes"])
    rx_inside = int(client.exec_start(inside["Id"]))
    assert abs(linux.network.default_interface.rx_bytes.value - rx_inside) < 4096
    host_names = {i.name for i in parse_net_dev(pathlib.Path("/proc/net/dev").read_text())}
    assert {i.name for i in linux.network.interfaces} != host_names - {"lo"}
