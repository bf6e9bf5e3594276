"""cgroup readers on recorded trees: v1 (cgroupfs driver, as on this VM's hybrid host) and v2
(systemd driver, the common case), rebuilt in tmp_path from the file contents recorded here."""

from __future__ import annotations

import pathlib

import pytest

from shim.cgroups import (
    CgroupMode,
    CgroupPaths,
    CgroupReader,
    CgroupUsage,
    parse_mounts,
    parse_proc_cgroup,
    sum_usage,
)

CID = "3a3a8af58a14f50fc21efc327f3cd547fae5b2ecc0faf4b9933dd2fb26472d9c"
UID = "0b5c2a31_7d2e_4c8e_9a47_8f0d3c6b1e22"
POD_V1 = f"/kubepods/burstable/pod{UID}"
POD_V2 = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID}.slice"

# /proc/self/mounts of a Debian host with the hybrid layout (this VM), one legacy host with
# co-mounted cpu,cpuacct, and a unified host (systemd default since 2021).
MOUNTS_HYBRID = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
MOUNTS_LEGACY = """\
tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0
"""
MOUNTS_UNIFIED = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
"""

PROC_CGROUP_V1 = f"""\
9:name=systemd:{POD_V1}/{CID}
8:pids:{POD_V1}/{CID}
4:memory:{POD_V1}/{CID}
2:cpuacct:{POD_V1}/{CID}
1:cpu:{POD_V1}/{CID}
0::{POD_V1}/{CID}
"""
PROC_CGROUP_V1_COMOUNTED = f"""\
12:pids:{POD_V1}/{CID}
5:cpu,cpuacct:{POD_V1}/{CID}
4:memory:{POD_V1}/{CID}
1:name=systemd:{POD_V1}/{CID}
"""
PROC_CGROUP_V2 = f"0::{POD_V2}/docker-{CID}.scope\n"

# memory.stat of a v1 container (trimmed to the keys read and a few neighbours).
MEMORY_STAT_V1 = """\
cache 389120
rss 49152
swap 0
pgfault 1152
total_cache 389120
total_rss 49152
total_swap 4096
total_pgfault 1152
total_pgmajfault 2
total_inactive_file 36864
total_active_file 352256
"""
MEMORY_STAT_V2 = """\
anon 1323008
file 4390912
pgfault 2530
pgmajfault 7
inactive_file 3805184
active_file 585728
"""
CPU_STAT_V2 = """\
usage_usec 81234567
user_usec 60000000
system_usec 21234567
nr_periods 0
"""


def _write_tree(root: pathlib.Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _reader(tmp_path: pathlib.Path, mounts: str, proc: dict[int, str]) -> CgroupReader:
    (tmp_path / "mounts").write_text(mounts)
    for pid, text in proc.items():
        _write_tree(tmp_path / "proc", {f"{pid}/cgroup": text})
    return CgroupReader(
        root=str(tmp_path / "cg"),
        mounts_path=str(tmp_path / "mounts"),
        proc_root=str(tmp_path / "proc"),
    )


def _v1_container_files(cpu_dir: str, container: str) -> dict[str, str]:
    return {
        f"{cpu_dir}/{container}/cpuacct.usage": "2090624481\n",
        f"memory/{container}/memory.usage_in_bytes": "589824\n",
        f"memory/{container}/memory.limit_in_bytes": "268435456\n",
        f"memory/{container}/memory.memsw.limit_in_bytes": "536870912\n",
        f"memory/{container}/memory.stat": MEMORY_STAT_V1,
        f"memory/{container}/cgroup.procs": "4242\n4250\n",
    }


@pytest.mark.parametrize(
    ("mounts", "mode", "cpuacct_dir"),
    [
        (MOUNTS_HYBRID, CgroupMode.HYBRID, "cpuacct"),
        (MOUNTS_LEGACY, CgroupMode.LEGACY, "cpu,cpuacct"),
        (MOUNTS_UNIFIED, CgroupMode.UNIFIED, None),
    ],
)
def test_layout_from_mounts(mounts: str, mode: CgroupMode, cpuacct_dir: str | None) -> None:
    layout = parse_mounts(mounts, "/r")
    assert layout.mode is mode
    if cpuacct_dir is None:
        assert layout.v1_dirs == {}
        assert layout.unified_dir == "/r"
    else:
        assert layout.v1_dirs["cpuacct"] == f"/r/{cpuacct_dir}"
        assert layout.v1_dirs["memory"] == "/r/memory"


def test_layout_keeps_host_paths_at_the_default_root() -> None:
    layout = parse_mounts(MOUNTS_HYBRID)
    assert layout.v1_dirs["memory"] == "/sys/fs/cgroup/memory"
    assert layout.unified_dir == "/sys/fs/cgroup/unified"


@pytest.mark.parametrize(
    ("text", "v1", "unified"),
    [
        (
            PROC_CGROUP_V1,
            {c: f"{POD_V1}/{CID}" for c in ("pids", "memory", "cpuacct")},
            f"{POD_V1}/{CID}",
        ),
        (
            PROC_CGROUP_V1_COMOUNTED,
            {c: f"{POD_V1}/{CID}" for c in ("pids", "memory", "cpuacct")},
            None,
        ),
        (PROC_CGROUP_V2, {}, f"{POD_V2}/docker-{CID}.scope"),
        ("garbage\n\n", {}, None),
    ],
)
def test_parse_proc_cgroup(text: str, v1: dict[str, str], unified: str | None) -> None:
    assert parse_proc_cgroup(text) == CgroupPaths(v1=v1, unified=unified)


@pytest.mark.parametrize(
    ("mounts", "proc", "cpu_dir"),
    [
        (MOUNTS_HYBRID, PROC_CGROUP_V1, "cpuacct"),
        (MOUNTS_LEGACY, PROC_CGROUP_V1_COMOUNTED, "cpu,cpuacct"),
    ],
)
def test_v1_container_usage(tmp_path: pathlib.Path, mounts: str, proc: str, cpu_dir: str) -> None:
    _write_tree(tmp_path / "cg", _v1_container_files(cpu_dir, f"{POD_V1}/{CID}"))
    reader = _reader(tmp_path, mounts, {4242: proc})
    paths = reader.paths_of_pid(4242)
    assert paths is not None
    assert reader.belongs_to(paths, CID)
    assert reader.usage(paths) == CgroupUsage(
        cpu_usage_ns=2090624481,
        memory_usage=589824,
        working_set=589824 - 36864,
        memory_limit=268435456,
        rss=49152,
        page_faults=1152,
        major_page_faults=2,
        swap_usage=4096,
        swap_limit=536870912 - 268435456,
        process_count=2,
    )


def test_v1_pod_cgroup_is_the_parent_and_counts_every_process(tmp_path: pathlib.Path) -> None:
    files = _v1_container_files("cpuacct", f"{POD_V1}/{CID}")
    files.update(
        {
            f"cpuacct/{POD_V1}/cpuacct.usage": "5000000000\n",
            f"memory/{POD_V1}/memory.usage_in_bytes": "10485760\n",
            # An unlimited v1 limit is LONG_MAX rounded down to a page.
            f"memory/{POD_V1}/memory.limit_in_bytes": "9223372036854771712\n",
            f"memory/{POD_V1}/memory.stat": "total_inactive_file 1048576\ntotal_rss 2097152\n",
            f"memory/{POD_V1}/cgroup.procs": "",
            f"memory/{POD_V1}/pause/cgroup.procs": "4100\n",
        }
    )
    _write_tree(tmp_path / "cg", files)
    reader = _reader(tmp_path, MOUNTS_HYBRID, {4242: PROC_CGROUP_V1})
    paths = reader.paths_of_pid(4242)
    assert paths is not None
    pod = reader.enclosing(paths)
    assert pod is not None and pod.v1["memory"] == POD_V1
    usage = reader.usage(pod)
    assert usage.cpu_usage_ns == 5_000_000_000
    assert usage.working_set == 10485760 - 1048576
    assert usage.memory_limit is None
    assert usage.swap_usage is None and usage.swap_limit is None
    assert usage.process_count == 3  # 4100 in the pause cgroup, 4242 and 4250 in the container


def test_v2_systemd_container_and_pod(tmp_path: pathlib.Path) -> None:
    scope = f"{POD_V2}/docker-{CID}.scope"
    _write_tree(
        tmp_path / "cg",
        {
            f"{scope}/cpu.stat": CPU_STAT_V2,
            f"{scope}/memory.current": "5713920\n",
            f"{scope}/memory.max": "max\n",
            f"{scope}/memory.stat": MEMORY_STAT_V2,
            f"{scope}/memory.swap.current": "0\n",
            f"{scope}/memory.swap.max": "max\n",
            f"{scope}/cgroup.procs": "4242\n",
            f"{POD_V2}/cpu.stat": "usage_usec 90000000\n",
            f"{POD_V2}/memory.current": "8000000\n",
            f"{POD_V2}/memory.max": "134217728\n",
            f"{POD_V2}/memory.stat": "inactive_file 1000000\nanon 3000000\n",
            f"{POD_V2}/memory.swap.current": "65536\n",
            f"{POD_V2}/memory.swap.max": "1048576\n",
            f"{POD_V2}/cgroup.procs": "",
        },
    )
    reader = _reader(tmp_path, MOUNTS_UNIFIED, {4242: PROC_CGROUP_V2})
    assert reader.mode is CgroupMode.UNIFIED
    paths = reader.paths_of_pid(4242)
    assert paths is not None and reader.belongs_to(paths, CID)
    assert reader.usage(paths) == CgroupUsage(
        cpu_usage_ns=81_234_567_000,
        memory_usage=5713920,
        working_set=5713920 - 3805184,
        memory_limit=None,
        rss=1323008,
        page_faults=2530,
        major_page_faults=7,
        swap_usage=0,
        swap_limit=None,
        process_count=1,
    )
    pod = reader.enclosing(paths)
    assert pod is not None and pod.unified == POD_V2
    assert reader.usage(pod) == CgroupUsage(
        cpu_usage_ns=90_000_000_000,
        memory_usage=8000000,
        working_set=7000000,
        memory_limit=134217728,
        rss=3000000,
        swap_usage=65536,
        swap_limit=1048576,
        process_count=1,  # the scope's 4242, counted through the pod slice
    )


def test_v2_cgroupfs_container_under_docker_default_parent(tmp_path: pathlib.Path) -> None:
    _write_tree(tmp_path / "cg", {f"/docker/{CID}/cpu.stat": "usage_usec 7\n"})
    reader = _reader(tmp_path, MOUNTS_UNIFIED, {1: f"0::/docker/{CID}\n", 2: "0::/init.scope\n"})
    paths = reader.paths_of_pid(1)
    assert paths is not None
    usage = reader.usage(paths)
    assert usage.cpu_usage_ns == 7000
    assert usage.memory_usage is None  # memory controller not enabled: nothing to report
    pod = reader.enclosing(paths)
    assert pod is not None and pod.unified == "/docker"
    other = reader.paths_of_pid(2)
    assert other is not None and not reader.belongs_to(other, CID)
    assert reader.enclosing(other) is None  # the parent would be the whole host


def test_gone_process_and_working_set_floor(tmp_path: pathlib.Path) -> None:
    container = f"/docker/{CID}"
    _write_tree(
        tmp_path / "cg",
        {
            f"memory/{container}/memory.usage_in_bytes": "100\n",
            f"memory/{container}/memory.stat": "total_inactive_file 4096\n",
        },
    )
    reader = _reader(tmp_path, MOUNTS_HYBRID, {7: f"4:memory:{container}\n"})
    assert reader.paths_of_pid(99) is None
    assert reader.paths_of_pid(0) is None
    paths = reader.paths_of_pid(7)
    assert paths is not None
    usage = reader.usage(paths)
    assert usage.working_set == 0  # inactive_file read after usage may exceed it
    assert usage.cpu_usage_ns is None


def test_sum_usage_adds_and_drops_limits() -> None:
    a = CgroupUsage(cpu_usage_ns=10, memory_usage=100, working_set=50, memory_limit=1000)
    b = CgroupUsage(cpu_usage_ns=5, memory_usage=20, working_set=20, process_count=2)
    assert sum_usage([a, b]) == CgroupUsage(
        cpu_usage_ns=15, memory_usage=120, working_set=70, process_count=2
    )
    assert sum_usage([]) == CgroupUsage()


def test_missing_mounts_file_reports_nothing(tmp_path: pathlib.Path) -> None:
    reader = CgroupReader(root=str(tmp_path), mounts_path=str(tmp_path / "absent"))
    assert reader.usage(CgroupPaths(v1={"memory": "/x"})) == CgroupUsage()
