"""Resource usage of a cgroup, read from the cgroup filesystem for cgroup v1 and v2.

The stats RPCs read these files directly instead of asking Docker (`docker stats` costs one
HTTP round trip and, without one-shot, a second sample per container): kubelet lists the stats
of every container every 10 s. The same reader gives pod-level numbers from the pod's cgroup.

A process's cgroup comes from `/proc/<pid>/cgroup`, so any cgroup parent and both cgroup drivers
work alike (cgroupfs: `<parent>/<id>`, systemd: `<parent>.slice/docker-<id>.scope`). The paths
there are relative to the reader's cgroup namespace: the shim must run in the host's.

Host layouts (`cgroups.Mode()` in containerd/cgroups draws the same three):

    legacy   every controller its own v1 hierarchy under /sys/fs/cgroup/<controller>
    hybrid   v1 controllers as above, plus an empty v2 hierarchy at /sys/fs/cgroup/unified
    unified  one v2 hierarchy at /sys/fs/cgroup holding every controller

Usage is read from the v1 controllers in the first two, from the v2 hierarchy in the last.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/sys/fs/cgroup"
DEFAULT_MOUNTS = "/proc/self/mounts"

# Above this a v1 limit means "no limit": the kernel rounds LONG_MAX down to a page multiple
# (9223372036854771712), so containerd compares with 2^62 rather than an exact value.
_UNLIMITED_ABOVE = 1 << 62

# The v1 controllers whose files the reader uses.
_V1_CONTROLLERS = ("cpuacct", "memory", "pids")


class CgroupMode(enum.Enum):
    LEGACY = "legacy"
    HYBRID = "hybrid"
    UNIFIED = "unified"


@dataclass(frozen=True)
class CgroupPaths:
    """Where one process (or a cgroup) sits: its path in each v1 hierarchy, keyed by
    controller, and its path in the v2 hierarchy. Paths start with '/'."""

    v1: Mapping[str, str] = field(default_factory=dict)
    unified: str | None = None

    def parent(self) -> CgroupPaths:
        """The enclosing cgroup in every hierarchy."""
        return CgroupPaths(
            v1={ctl: os.path.dirname(p) for ctl, p in self.v1.items()},
            unified=os.path.dirname(self.unified) if self.unified is not None else None,
        )


@dataclass(frozen=True)
class CgroupUsage:
    """One sample of a cgroup's usage; None where the host does not account it."""

    cpu_usage_ns: int | None = None
    memory_usage: int | None = None  # v1 memory.usage_in_bytes, v2 memory.current
    working_set: int | None = None  # usage minus inactive file pages, as kubelet defines it
    memory_limit: int | None = None  # None: no limit
    rss: int | None = None
    page_faults: int | None = None
    major_page_faults: int | None = None
    swap_usage: int | None = None
    swap_limit: int | None = None  # None: no limit, or swap not accounted
    process_count: int | None = None


def sum_usage(samples: Iterable[CgroupUsage]) -> CgroupUsage:
    """The usage of several cgroups taken together (a pod without a cgroup of its own). A sum
    has no limit, and a field is None only when no sample has it."""
    totals: dict[str, int | None] = {}
    for sample in samples:
        for f in fields(CgroupUsage):
            if f.name in ("memory_limit", "swap_limit"):
                continue
            value = getattr(sample, f.name)
            if value is not None:
                totals[f.name] = (totals.get(f.name) or 0) + value
    return CgroupUsage(**totals)


def parse_proc_cgroup(text: str) -> CgroupPaths:
    """`/proc/<pid>/cgroup` lines `hierarchy-id:controllers:path`; v2 has id 0 and no
    controllers. Only the v1 controllers whose files we read are kept (named hierarchies such
    as `name=systemd` carry no usage)."""
    v1: dict[str, str] = {}
    unified = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            unified = path
            continue
        for ctl in controllers.split(","):
            if ctl in _V1_CONTROLLERS:
                v1[ctl] = path
    return CgroupPaths(v1=v1, unified=unified)


@dataclass(frozen=True)
class CgroupLayout:
    """Where the hierarchies are mounted: a directory per v1 controller, and the v2 root."""

    mode: CgroupMode
    v1_dirs: Mapping[str, str]
    unified_dir: str | None


def parse_mounts(text: str, root: str = DEFAULT_ROOT) -> CgroupLayout:
    """The layout from a mounts table (`/proc/self/mounts` format). Mount points under the
    host's /sys/fs/cgroup are re-rooted under `root`, so that a test reads a recorded tree."""
    v1_dirs: dict[str, str] = {}
    unified_dir = None
    unified_at_root = False
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[2] not in ("cgroup", "cgroup2"):
            continue
        mountpoint = _rebase(_unescape(parts[1]), root)
        if parts[2] == "cgroup2":
            unified_dir = mountpoint
            unified_at_root = os.path.normpath(mountpoint) == os.path.normpath(root)
            continue
        for option in parts[3].split(","):
            if option in _V1_CONTROLLERS:
                v1_dirs.setdefault(option, mountpoint)
    if unified_at_root and not v1_dirs:
        mode = CgroupMode.UNIFIED
    elif unified_dir is not None and v1_dirs:
        mode = CgroupMode.HYBRID
    else:
        mode = CgroupMode.LEGACY
    return CgroupLayout(mode=mode, v1_dirs=v1_dirs, unified_dir=unified_dir)


def _rebase(mountpoint: str, root: str) -> str:
    if root == DEFAULT_ROOT:
        return mountpoint
    rel = os.path.relpath(mountpoint, DEFAULT_ROOT)
    return mountpoint if rel.startswith("..") else os.path.normpath(os.path.join(root, rel))


def _unescape(field_text: str) -> str:
    """Mount tables escape space, tab, newline and backslash as octal (`\\040`)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field_text = field_text.replace(code, char)
    return field_text


class CgroupReader:
    """Reads usage under one cgroup root. Built once: the layout is parsed at construction."""

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        mounts_path: str = DEFAULT_MOUNTS,
        proc_root: str = "/proc",
    ) -> None:
        self.root = root
        self.proc_root = proc_root
        try:
            with open(mounts_path, encoding="utf-8", errors="replace") as f:
                self.layout = parse_mounts(f.read(), root)
        except OSError as err:
            log.warning("cannot read %s (%s): no cgroup usage will be reported", mounts_path, err)
            self.layout = CgroupLayout(CgroupMode.LEGACY, {}, None)

    @property
    def mode(self) -> CgroupMode:
        return self.layout.mode

    def paths_of_pid(self, pid: int) -> CgroupPaths | None:
        """The cgroups of a live process; None when it is gone."""
        if pid <= 0:
            return None
        try:
            with open(os.path.join(self.proc_root, str(pid), "cgroup"), encoding="utf-8") as f:
                return parse_proc_cgroup(f.read())
        except (FileNotFoundError, ProcessLookupError):
            return None

    def _in_use(self, paths: CgroupPaths) -> list[str]:
        """The paths this host's usage is read from: v2 only on a unified host, else v1 (on a
        hybrid host the v2 path is systemd's bookkeeping and may differ)."""
        if self.mode is CgroupMode.UNIFIED:
            return [paths.unified] if paths.unified is not None else []
        return list(paths.v1.values())

    def belongs_to(self, paths: CgroupPaths, container_id: str) -> bool:
        """Whether the cgroup is the container's own (both drivers put the id in its last
        component): a pid reused by another process after the container died fails this."""
        in_use = self._in_use(paths)
        return bool(in_use) and all(container_id in os.path.basename(p) for p in in_use)

    def enclosing(self, paths: CgroupPaths) -> CgroupPaths | None:
        """The parent cgroup (a pod's, for a container in it); None when the parent is the
        root, which would be the whole host."""
        parent = paths.parent()
        in_use = self._in_use(parent)
        if not in_use or any(p in ("", "/") for p in in_use):
            return None
        return parent

    def usage(self, paths: CgroupPaths) -> CgroupUsage:
        if self.mode is CgroupMode.UNIFIED:
            if paths.unified is None or self.layout.unified_dir is None:
                return CgroupUsage()
            return _read_v2(_join(self.layout.unified_dir, paths.unified))
        return self._read_v1(paths)

    def _v1_dir(self, paths: CgroupPaths, controller: str) -> str | None:
        mount = self.layout.v1_dirs.get(controller)
        path = paths.v1.get(controller)
        return None if mount is None or path is None else _join(mount, path)

    def _read_v1(self, paths: CgroupPaths) -> CgroupUsage:
        cpu_dir = self._v1_dir(paths, "cpuacct")
        mem_dir = self._v1_dir(paths, "memory")
        cpu = _read_int(cpu_dir, "cpuacct.usage") if cpu_dir else None
        if mem_dir is None:
            return CgroupUsage(cpu_usage_ns=cpu, process_count=self._procs_v1(paths))
        stat = _read_flat_keyed(mem_dir, "memory.stat")
        usage = _read_int(mem_dir, "memory.usage_in_bytes")
        limit = _limit(_read_int(mem_dir, "memory.limit_in_bytes"))
        memsw_limit = _limit(_read_int(mem_dir, "memory.memsw.limit_in_bytes"))
        # memory.memsw.* counts memory plus swap, so the swap allowance is the difference.
        swap_limit = memsw_limit - limit if memsw_limit is not None and limit is not None else None
        return CgroupUsage(
            cpu_usage_ns=cpu,
            memory_usage=usage,
            working_set=_working_set(usage, stat.get("total_inactive_file")),
            memory_limit=limit,
            rss=stat.get("total_rss"),
            page_faults=stat.get("total_pgfault"),
            major_page_faults=stat.get("total_pgmajfault"),
            swap_usage=stat.get("total_swap"),  # present only with swap accounting on
            swap_limit=swap_limit if "total_swap" in stat else None,
            process_count=_count_procs(mem_dir),
        )

    def _procs_v1(self, paths: CgroupPaths) -> int | None:
        for controller in ("pids", "cpuacct"):
            directory = self._v1_dir(paths, controller)
            if directory is not None:
                return _count_procs(directory)
        return None


def _read_v2(directory: str) -> CgroupUsage:
    cpu = _read_flat_keyed(directory, "cpu.stat").get("usage_usec")
    stat = _read_flat_keyed(directory, "memory.stat")
    usage = _read_int(directory, "memory.current")
    swap = _read_int(directory, "memory.swap.current")
    return CgroupUsage(
        cpu_usage_ns=cpu * 1000 if cpu is not None else None,
        memory_usage=usage,
        working_set=_working_set(usage, stat.get("inactive_file")),
        memory_limit=_read_int(directory, "memory.max"),  # "max" reads as None
        rss=stat.get("anon"),
        page_faults=stat.get("pgfault"),
        major_page_faults=stat.get("pgmajfault"),
        swap_usage=swap,
        swap_limit=_read_int(directory, "memory.swap.max") if swap is not None else None,
        process_count=_count_procs(directory),
    )


def _working_set(usage: int | None, inactive_file: int | None) -> int | None:
    """kubelet's working set: usage less the file pages the kernel can drop first; never below
    zero (inactive_file can briefly exceed usage, the counters are not read atomically)."""
    if usage is None:
        return None
    return max(usage - (inactive_file or 0), 0)


def _limit(value: int | None) -> int | None:
    return None if value is None or value > _UNLIMITED_ABOVE else value


def _join(mount: str, cgroup_path: str) -> str:
    return os.path.join(mount, cgroup_path.lstrip("/"))


def _read_text(directory: str, name: str) -> str | None:
    try:
        with open(os.path.join(directory, name), encoding="ascii", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    except OSError as err:  # e.g. ENODEV from a cgroup being removed under us
        log.debug("cannot read %s/%s: %s", directory, name, err)
        return None


def _read_int(directory: str, name: str) -> int | None:
    text = _read_text(directory, name)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:  # "max", or an empty file of a dying cgroup
        return None


def _read_flat_keyed(directory: str, name: str) -> dict[str, int]:
    """A `key value` per line file (memory.stat, cpu.stat)."""
    text = _read_text(directory, name)
    result: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            result[key] = int(value)
        except ValueError:
            continue
    return result


def _count_procs(directory: str) -> int | None:
    """Processes in a cgroup and all its descendants, from `cgroup.procs` as runc and cadvisor
    count them (`pids.current` would count threads as well)."""
    pids: set[str] = set()
    found = False
    stack = [directory]
    while stack:
        current = stack.pop()
        text = _read_text(current, "cgroup.procs")
        if text is None:
            continue
        found = True
        pids.update(line for line in text.split() if line)
        try:
            with os.scandir(current) as entries:
                stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return len(pids) if found else None
