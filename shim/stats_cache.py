"""What the stats RPCs keep between calls, one per shim context: the previous CPU sample of each
container and pod (a rate needs two samples), writable layer sizes, infra pids, and the
cgroup reader with its parsed mount table.

The context holds it (`ShimContext.stats_cache`); `cache_of(ctx)` makes it on first use, so
nothing is built at start-up for a node that is never asked for stats.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from shim.cgroups import CgroupPaths, CgroupReader
from shim.container.writable_layer import WritableLayerCache, docker_upper_dir
from shim.context import ShimContext
from shim.engine.docker_engine import DockerInfraRuntime

log = logging.getLogger(__name__)

# Samples closer together than this give a noisy rate (crictl stats right after kubelet's
# call): the previous rate is reported again and the older sample kept.
MIN_RATE_WINDOW_NS = 1_000_000_000


@dataclass
class _Sample:
    usage_ns: int
    timestamp: int
    rate: int | None = None


class CpuSampler:
    """usage_nano_cores from successive cumulative CPU times, as containerd computes it
    (`getUsageNanoCores`): Δusage / Δwall * 1e9 against the sample kept from the last call."""

    def __init__(self) -> None:
        self._samples: dict[str, _Sample] = {}
        self._guard = threading.Lock()

    def nano_cores(self, key: str, usage_ns: int, timestamp: int) -> int | None:
        """The rate since the previous sample of `key`; None for the first one."""
        with self._guard:
            prev = self._samples.get(key)
            if prev is None or usage_ns < prev.usage_ns or timestamp < prev.timestamp:
                # First sample, or the counter went back (a restarted container, a pod whose
                # sum lost an exited container): start over.
                self._samples[key] = _Sample(usage_ns, timestamp)
                return None
            window = timestamp - prev.timestamp
            if window < MIN_RATE_WINDOW_NS:
                return prev.rate
            rate = (usage_ns - prev.usage_ns) * 1_000_000_000 // window
            self._samples[key] = _Sample(usage_ns, timestamp, rate)
            return rate

    def forget_all_but(self, keys: Iterable[str]) -> None:
        keep = set(keys)
        with self._guard:
            for stale in [k for k in self._samples if k not in keep]:
                del self._samples[stale]


class InfraPids:
    """The host pid of each sandbox's infra container, asked of Docker only when the cached one
    no longer belongs to that container (checked through its cgroup, which names the id)."""

    def __init__(self, reader: CgroupReader) -> None:
        self._reader = reader
        self._pids: dict[str, int] = {}
        self._guard = threading.Lock()

    def paths(self, ctx: ShimContext, sandbox_id: str) -> tuple[int, CgroupPaths] | None:
        """(pid, cgroup paths) of the running infra container; None when it is not running."""
        with self._guard:
            cached = self._pids.get(sandbox_id)
        if cached is not None:
            paths = self._reader.paths_of_pid(cached)
            if paths is not None and self._reader.belongs_to(paths, sandbox_id):
                return cached, paths
        state = ctx.infra.inspect(sandbox_id)
        if state is None or not state.running or state.pid <= 0:
            with self._guard:
                self._pids.pop(sandbox_id, None)
            return None
        paths = self._reader.paths_of_pid(state.pid)
        if paths is None or not self._reader.belongs_to(paths, sandbox_id):
            log.debug("sandbox %s: pid %d has no cgroup of its own", sandbox_id, state.pid)
            return None
        with self._guard:
            self._pids[sandbox_id] = state.pid
        return state.pid, paths

    def forget_all_but(self, sandbox_ids: Iterable[str]) -> None:
        keep = set(sandbox_ids)
        with self._guard:
            for stale in [k for k in self._pids if k not in keep]:
                del self._pids[stale]


class StatsCache:
    def __init__(
        self,
        reader: CgroupReader,
        layers: WritableLayerCache,
        images_mountpoint: str | None = None,
    ) -> None:
        self.reader = reader
        self.cpu = CpuSampler()
        self.layers = layers
        self.infra_pids = InfraPids(reader)
        self._images_mountpoint = images_mountpoint

    def images_mountpoint(self, ctx: ShimContext) -> str:
        """The writable layers' fs_id: the same mountpoint ImageFsInfo reports, because kubelet
        looks a container's writable layer up among the image filesystems by that key."""
        if self._images_mountpoint is None:
            root = ctx.infra.images_root()
            image_dir = os.path.join(root, "image")
            self._images_mountpoint = image_dir if os.path.isdir(image_dir) else root
        return self._images_mountpoint

    @classmethod
    def for_context(cls, ctx: ShimContext) -> StatsCache:
        lookup = None
        if isinstance(ctx.infra, DockerInfraRuntime):
            lookup = docker_upper_dir(ctx.infra.client)
        return cls(CgroupReader(), WritableLayerCache(lookup))


_guard = threading.Lock()


def cache_of(ctx: ShimContext) -> StatsCache:
    """The context's cache, made on first use."""
    with _guard:
        if ctx.stats_cache is None:
            ctx.stats_cache = StatsCache.for_context(ctx)
        return ctx.stats_cache


def install_cache(ctx: ShimContext, cache: StatsCache) -> None:
    """Give a context a prepared cache (tests: a recorded cgroup tree, a fake layer lookup)."""
    with _guard:
        ctx.stats_cache = cache
