"""Container and pod stats RPCs on a recorded cgroup v1 tree, a fake /proc and a fake engine:
which fields are filled from where, filters, the CPU rate, and the caches that keep Docker and
tree walks off the hot path."""

from __future__ import annotations

import base64
import os
import pathlib
from dataclasses import dataclass, field
from typing import cast

import pytest

from cri_api import api_pb2
from shim.cgroups import CgroupReader
from shim.container.stats import container_stats, list_container_stats
from shim.container.writable_layer import WritableLayerCache, disk_usage
from shim.context import ShimContext
from shim.engine.protocol import InfraState
from shim.errors import InvalidArgumentError, NotFoundError, UnavailableError
from shim.sandbox.stats import list_pod_sandbox_stats, parse_net_dev, pod_sandbox_stats
from shim.stats_cache import CpuSampler, StatsCache, install_cache
from shim.store.container_record import ContainerRecord, ContainerSpec, ContainerState
from shim.store.container_store import ContainerStore
from shim.store.sandbox_record import SandboxRecord, SandboxState

SB = "5b" * 32
SB_HOST = "4e" * 32
C_RUN = "c1" * 32
C_EXITED = "c2" * 32
C_HOST = "c3" * 32
POD = "/kubepods/burstable/podu1"
MOUNTS = """\
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
# /proc/<pid>/net/dev of a pod with a second (multus-style) interface.
NET_DEV = (pathlib.Path(__file__).parent / "data" / "proc_net_dev.txt").read_text()


@dataclass
class FakeInfra:
    pids: dict[str, int]
    root: str
    inspected: list[str] = field(default_factory=list)

    def inspect(self, container_id: str) -> InfraState | None:
        self.inspected.append(container_id)
        pid = self.pids.get(container_id)
        if pid is None:
            return None
        return InfraState(container_id, pid > 0, pid, "", {}, 0)

    def images_root(self) -> str:
        return self.root


@dataclass
class FakeSandboxes:
    records: dict[str, SandboxRecord]

    def all(self) -> list[SandboxRecord]:
        return list(self.records.values())

    def get(self, sandbox_id: str) -> SandboxRecord | None:
        return self.records.get(sandbox_id)

    def resolve(self, id_or_prefix: str) -> str:
        from shim.store.ids import resolve_prefix

        return resolve_prefix(self.records, id_or_prefix, "pod sandbox")


@dataclass
class FakeContext:
    store: FakeSandboxes
    infra: FakeInfra
    containers: ContainerStore


def _write(root: pathlib.Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _sandbox(sandbox_id: str, cgroup_parent: str, host_network: bool = False) -> SandboxRecord:
    config = api_pb2.PodSandboxConfig()
    config.linux.cgroup_parent = cgroup_parent
    return SandboxRecord(
        id=sandbox_id,
        name="web",
        namespace="ns",
        uid="u1",
        attempt=2,
        created_at=1,
        config_b64=base64.b64encode(config.SerializeToString()).decode(),
        state=SandboxState.READY,
        host_network=host_network,
        labels={"app": "web"},
        annotations={"a": "b"},
    )


def _container(cid: str, sandbox_id: str, state: ContainerState, pid: int) -> ContainerRecord:
    spec = ContainerSpec(
        sandbox_id=sandbox_id,
        name="c-" + cid[:2],
        attempt=3,
        image="busybox",
        image_id="sha256:x",
        created_at=int(cid[1], 16),
        labels={"tier": "front" if cid == C_RUN else "back"},
        annotations={"note": cid[:2]},
    )
    return ContainerRecord(id=cid, spec=spec, state=state, pid=pid)


def _v1_cgroup(path: str, cpu: int, usage: int, inactive: int, procs: str) -> dict[str, str]:
    return {
        f"cpuacct{path}/cpuacct.usage": f"{cpu}\n",
        f"memory{path}/memory.usage_in_bytes": f"{usage}\n",
        f"memory{path}/memory.limit_in_bytes": "9223372036854771712\n",
        f"memory{path}/memory.stat": (
            "total_rss 4096\ntotal_pgfault 10\ntotal_pgmajfault 1\n"
            f"total_inactive_file {inactive}\n"
        ),
        f"memory{path}/cgroup.procs": procs,
    }


@pytest.fixture
def world(tmp_path: pathlib.Path) -> tuple[FakeContext, StatsCache, pathlib.Path]:
    cg = tmp_path / "cg"
    files = {}
    files.update(_v1_cgroup(POD, 9_000, 1_000_000, 100_000, ""))
    files.update(_v1_cgroup(f"{POD}/{SB}", 1_000, 200_000, 0, "100\n"))
    files.update(_v1_cgroup(f"{POD}/{C_RUN}", 7_000, 700_000, 50_000, "200\n201\n"))
    files.update(_v1_cgroup(f"/docker/{SB_HOST}", 11, 300, 0, "300\n"))
    files.update(_v1_cgroup(f"/docker/{C_HOST}", 22, 400, 0, "400\n"))
    files[f"memory{POD}/{C_RUN}/memory.limit_in_bytes"] = "1048576\n"
    _write(cg, files)
    proc = tmp_path / "proc"
    for pid, path in ((100, f"{POD}/{SB}"), (200, f"{POD}/{C_RUN}"), (300, f"/docker/{SB_HOST}")):
        _write(proc, {f"{pid}/cgroup": f"4:memory:{path}\n2:cpuacct:{path}\n"})
    _write(proc, {"400/cgroup": f"4:memory:/docker/{C_HOST}\n2:cpuacct:/docker/{C_HOST}\n"})
    _write(proc, {"100/net/dev": NET_DEV, "300/net/dev": NET_DEV})
    (tmp_path / "mounts").write_text(MOUNTS)
    upper = tmp_path / "upper" / C_RUN
    upper.mkdir(parents=True)
    (upper / "file").write_bytes(b"x" * 10_000)

    docker_root = tmp_path / "docker"
    (docker_root / "image").mkdir(parents=True)
    lookups: list[str] = []

    def lookup(cid: str) -> str | None:
        lookups.append(cid)
        return str(upper) if cid == C_RUN else None

    containers = ContainerStore()
    containers.put(_container(C_RUN, SB, ContainerState.RUNNING, 200))
    containers.put(_container(C_EXITED, SB, ContainerState.EXITED, 0))
    containers.put(_container(C_HOST, SB_HOST, ContainerState.RUNNING, 400))
    ctx = FakeContext(
        store=FakeSandboxes({SB: _sandbox(SB, POD), SB_HOST: _sandbox(SB_HOST, "", True)}),
        infra=FakeInfra({SB: 100, SB_HOST: 300}, str(docker_root)),
        containers=containers,
    )
    reader = CgroupReader(str(cg), str(tmp_path / "mounts"), str(proc))
    cache = StatsCache(reader, WritableLayerCache(lookup))
    install_cache(cast(ShimContext, ctx), cache)
    return ctx, cache, tmp_path


def _ctx(world: tuple[FakeContext, StatsCache, pathlib.Path]) -> ShimContext:
    return cast(ShimContext, world[0])


def test_running_container_fields(world: tuple[FakeContext, StatsCache, pathlib.Path]) -> None:
    stats = container_stats(_ctx(world), api_pb2.ContainerStatsRequest(container_id=C_RUN[:6]))
    s = stats.stats
    assert s.attributes.id == C_RUN
    assert (s.attributes.metadata.name, s.attributes.metadata.attempt) == ("c-c1", 3)
    assert dict(s.attributes.labels) == {"tier": "front"}
    assert dict(s.attributes.annotations) == {"note": "c1"}
    assert s.cpu.timestamp > 0 and s.cpu.usage_core_nano_seconds.value == 7_000
    assert not s.cpu.HasField("usage_nano_cores")  # one sample gives no rate
    assert s.memory.usage_bytes.value == 700_000
    assert s.memory.working_set_bytes.value == 650_000
    assert s.memory.available_bytes.value == 1_048_576 - 650_000
    assert (s.memory.rss_bytes.value, s.memory.page_faults.value) == (4096, 10)
    assert s.memory.major_page_faults.value == 1
    assert not s.HasField("swap")  # no swap accounting in this tree
    layer = s.writable_layer
    assert layer.fs_id.mountpoint == str(world[2] / "docker" / "image")
    assert layer.used_bytes.value == disk_usage(str(world[2] / "upper" / C_RUN))[0] > 0
    assert layer.inodes_used.value == 2  # the upper dir and its file


def test_not_running_container_has_attributes_only(
    world: tuple[FakeContext, StatsCache, pathlib.Path],
) -> None:
    s = container_stats(_ctx(world), api_pb2.ContainerStatsRequest(container_id=C_EXITED)).stats
    assert s.attributes.id == C_EXITED
    assert not s.HasField("cpu") and not s.HasField("memory")
    assert s.writable_layer.used_bytes.value == 0  # no upper dir known: zero, still present


def test_unknown_and_ambiguous_ids(world: tuple[FakeContext, StatsCache, pathlib.Path]) -> None:
    with pytest.raises(NotFoundError):
        container_stats(_ctx(world), api_pb2.ContainerStatsRequest(container_id="ffff"))
    with pytest.raises(InvalidArgumentError):
        container_stats(_ctx(world), api_pb2.ContainerStatsRequest(container_id="c"))


def test_stale_pid_reports_no_usage(world: tuple[FakeContext, StatsCache, pathlib.Path]) -> None:
    record = world[0].containers.get(C_RUN)
    assert record is not None
    record.pid = 300  # now someone else's process
    s = container_stats(_ctx(world), api_pb2.ContainerStatsRequest(container_id=C_RUN)).stats
    assert not s.HasField("cpu")


@pytest.mark.parametrize(
    ("flt", "ids"),
    [
        (None, [C_RUN, C_EXITED, C_HOST]),
        (api_pb2.ContainerStatsFilter(id=C_EXITED[:8]), [C_EXITED]),
        (api_pb2.ContainerStatsFilter(id="nope"), []),
        (api_pb2.ContainerStatsFilter(pod_sandbox_id=SB[:5]), [C_RUN, C_EXITED]),
        (api_pb2.ContainerStatsFilter(label_selector={"tier": "back"}), [C_EXITED, C_HOST]),
        (
            api_pb2.ContainerStatsFilter(pod_sandbox_id=SB, label_selector={"tier": "back"}),
            [C_EXITED],
        ),
    ],
)
def test_list_filters(
    world: tuple[FakeContext, StatsCache, pathlib.Path],
    flt: api_pb2.ContainerStatsFilter | None,
    ids: list[str],
) -> None:
    request = api_pb2.ListContainerStatsRequest(filter=flt)
    got = list_container_stats(_ctx(world), request)
    assert [s.attributes.id for s in got.stats] == ids


def test_layer_sizes_are_cached(world: tuple[FakeContext, StatsCache, pathlib.Path]) -> None:
    ctx = _ctx(world)
    first = list_container_stats(ctx, api_pb2.ListContainerStatsRequest())
    (world[2] / "upper" / C_RUN / "more").write_bytes(b"y" * 50_000)
    second = list_container_stats(ctx, api_pb2.ListContainerStatsRequest())
    assert first.stats[0].writable_layer.used_bytes == second.stats[0].writable_layer.used_bytes
    assert world[0].infra.inspected == []  # container stats never ask the engine


def test_disk_usage_counts_hard_links_once(tmp_path: pathlib.Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"z" * 8192)
    os.link(tmp_path / "d" / "a", tmp_path / "d" / "b")
    os.symlink("a", tmp_path / "d" / "s")
    used, inodes = disk_usage(str(tmp_path))
    assert inodes == 4  # tmp_path, d, a (= b), s
    assert used == sum(
        os.lstat(p).st_blocks * 512
        for p in (tmp_path, tmp_path / "d", tmp_path / "d" / "a", tmp_path / "d" / "s")
    )
    assert disk_usage(str(tmp_path / "absent")) == (0, 0)


def test_cpu_rate_as_containerd_computes_it() -> None:
    sampler = CpuSampler()
    second = 1_000_000_000
    assert sampler.nano_cores("k", 1_000, 10 * second) is None
    assert sampler.nano_cores("k", 1_000 + second // 2, 11 * second) == second // 2
    # A call 100 ms later repeats the last rate instead of a noisy one.
    assert sampler.nano_cores("k", 1_000 + second, 11 * second + second // 10) == second // 2
    assert sampler.nano_cores("k", 1_000 + 2 * second, 13 * second) == (3 * second // 2) // 2
    assert sampler.nano_cores("k", 5, 14 * second) is None  # counter reset: start over
    sampler.forget_all_but([])
    assert sampler.nano_cores("k", 10, 15 * second) is None


def test_pod_with_its_own_cgroup(world: tuple[FakeContext, StatsCache, pathlib.Path]) -> None:
    ctx = _ctx(world)
    s = pod_sandbox_stats(ctx, api_pb2.PodSandboxStatsRequest(pod_sandbox_id=SB[:4])).stats
    assert s.attributes.id == SB
    meta = s.attributes.metadata
    assert (meta.name, meta.namespace, meta.uid, meta.attempt) == ("web", "ns", "u1", 2)
    assert dict(s.attributes.labels) == {"app": "web"}
    assert dict(s.attributes.annotations) == {"a": "b"}
    linux = s.linux
    assert linux.cpu.usage_core_nano_seconds.value == 9_000  # the pod cgroup, not a sum
    assert linux.memory.working_set_bytes.value == 900_000
    assert not linux.memory.HasField("available_bytes")  # no limit on the pod
    assert linux.process.process_count.value == 3
    assert linux.network.default_interface.name == "eth0"
    eth0 = linux.network.default_interface
    assert (eth0.rx_bytes.value, eth0.rx_errors.value) == (14862, 1)
    assert (eth0.tx_bytes.value, eth0.tx_errors.value) == (5034, 2)
    assert [i.name for i in linux.network.interfaces] == ["eth0", "net1"]
    assert [c.attributes.id for c in linux.containers] == [C_RUN, C_EXITED]
    pod_sandbox_stats(ctx, api_pb2.PodSandboxStatsRequest(pod_sandbox_id=SB))
    assert world[0].infra.inspected == [SB]  # the infra pid is remembered while it is valid


def test_host_network_pod_without_cgroup_parent_sums(
    world: tuple[FakeContext, StatsCache, pathlib.Path],
) -> None:
    s = pod_sandbox_stats(_ctx(world), api_pb2.PodSandboxStatsRequest(pod_sandbox_id=SB_HOST))
    linux = s.stats.linux
    assert linux.cpu.usage_core_nano_seconds.value == 11 + 22  # infra + its container
    assert linux.memory.usage_bytes.value == 300 + 400
    assert linux.process.process_count.value == 2
    assert not linux.HasField("network")  # it would be the host's


def test_pod_not_ready_or_gone(world: tuple[FakeContext, StatsCache, pathlib.Path]) -> None:
    ctx = _ctx(world)
    world[0].infra.pids[SB] = 0  # infra container exited
    world[1].infra_pids.forget_all_but([])
    with pytest.raises(UnavailableError):
        pod_sandbox_stats(ctx, api_pb2.PodSandboxStatsRequest(pod_sandbox_id=SB))
    got = list_pod_sandbox_stats(ctx, api_pb2.ListPodSandboxStatsRequest())
    assert [s.attributes.id for s in got.stats] == [SB_HOST]
    with pytest.raises(NotFoundError):
        pod_sandbox_stats(ctx, api_pb2.PodSandboxStatsRequest(pod_sandbox_id="ffff"))


@pytest.mark.parametrize(
    ("flt", "ids"),
    [
        (None, [SB, SB_HOST]),
        (api_pb2.PodSandboxStatsFilter(id=SB_HOST[:3]), [SB_HOST]),
        (api_pb2.PodSandboxStatsFilter(label_selector={"app": "web"}), [SB, SB_HOST]),
        (api_pb2.PodSandboxStatsFilter(label_selector={"app": "db"}), []),
    ],
)
def test_list_pod_filters(
    world: tuple[FakeContext, StatsCache, pathlib.Path],
    flt: api_pb2.PodSandboxStatsFilter | None,
    ids: list[str],
) -> None:
    got = list_pod_sandbox_stats(_ctx(world), api_pb2.ListPodSandboxStatsRequest(filter=flt))
    assert sorted(s.attributes.id for s in got.stats) == sorted(ids)


def test_parse_net_dev() -> None:
    rows = parse_net_dev(NET_DEV + "  bad: 1 2 3\n")
    assert [(r.name, r.rx_bytes, r.rx_errors, r.tx_bytes, r.tx_errors) for r in rows] == [
        ("lo", 560, 0, 560, 0),
        ("eth0", 14862, 1, 5034, 2),
        ("net1", 90, 0, 0, 0),
    ]
