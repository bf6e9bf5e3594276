"""ContainerStats and ListContainerStats, read from the cgroup files of each container.

No Docker call on the hot path: kubelet lists every container's stats every 10 s (its
eviction manager), so CPU and memory come from the cgroup of the pid the store already knows,
and writable layer sizes from a cache (`writable_layer.py`).

As in containerd (`containerMetrics`), every container is listed: one that is not running
has its attributes and writable layer but no cpu or memory, because it has no cgroup to read.
"""

from __future__ import annotations

import logging
import time

from cri_api import api_pb2
from shim.cgroups import CgroupUsage
from shim.container.convert import metadata
from shim.context import ShimContext
from shim.stats_cache import StatsCache, cache_of
from shim.store.container_record import ContainerRecord, ContainerState

log = logging.getLogger(__name__)


def container_stats(
    ctx: ShimContext, request: api_pb2.ContainerStatsRequest
) -> api_pb2.ContainerStatsResponse:
    record = ctx.containers.require(request.container_id)  # NOT_FOUND / INVALID_ARGUMENT
    cache = cache_of(ctx)
    return api_pb2.ContainerStatsResponse(
        stats=stats_of(cache, record, layer_mountpoint(ctx, cache))
    )


def list_container_stats(
    ctx: ShimContext, request: api_pb2.ListContainerStatsRequest
) -> api_pb2.ListContainerStatsResponse:
    cache = cache_of(ctx)
    records = ctx.containers.all()
    flt = request.filter if request.HasField("filter") else None
    if flt is None or not (flt.id or flt.pod_sandbox_id or flt.label_selector):
        # A full listing sees every container: the time to forget the removed ones.
        cache.layers.forget_all_but(r.id for r in records)
        cache.cpu.forget_all_but([r.id for r in records] + pod_keys(ctx))
    mountpoint = layer_mountpoint(ctx, cache)
    stats = [
        stats_of(cache, record, mountpoint)
        for record in sorted(records, key=lambda r: r.spec.created_at)
        if flt is None or _matches(flt, record)
    ]
    return api_pb2.ListContainerStatsResponse(stats=stats)


def pod_keys(ctx: ShimContext) -> list[str]:
    """The CPU sampler keys of the pods, kept alongside the containers' ones."""
    return [pod_cpu_key(s.id) for s in ctx.store.all()]


def pod_cpu_key(sandbox_id: str) -> str:
    return "pod:" + sandbox_id


def _matches(flt: api_pb2.ContainerStatsFilter, record: ContainerRecord) -> bool:
    # Prefixes, as ListContainers takes them: crictl passes the ids it printed, truncated.
    if flt.id and not record.id.startswith(flt.id):
        return False
    if flt.pod_sandbox_id and not record.sandbox_id.startswith(flt.pod_sandbox_id):
        return False
    return all(record.spec.labels.get(k) == v for k, v in flt.label_selector.items())


def stats_of(cache: StatsCache, record: ContainerRecord, mountpoint: str) -> api_pb2.ContainerStats:
    spec = record.spec
    stats = api_pb2.ContainerStats(
        attributes=api_pb2.ContainerAttributes(
            id=record.id,
            metadata=metadata(record),
            labels=spec.labels,
            annotations=spec.annotations,
        ),
        writable_layer=_writable_layer(cache, record.id, mountpoint),
    )
    usage = _running_usage(cache, record)
    if usage is not None:
        now = time.time_ns()
        fill_cpu_memory(stats.cpu, stats.memory, cache, record.id, usage, now)
        if usage.swap_usage is not None:
            stats.swap.CopyFrom(swap_usage(usage, now))
    return stats


def _running_usage(cache: StatsCache, record: ContainerRecord) -> CgroupUsage | None:
    if record.state is not ContainerState.RUNNING:
        return None
    paths = cache.reader.paths_of_pid(record.pid)
    if paths is None or not cache.reader.belongs_to(paths, record.id):
        # Exited after the store last heard of it, and the pid is gone or someone else's.
        log.debug("container %s: pid %d has no cgroup of its own", record.id, record.pid)
        return None
    return cache.reader.usage(paths)


def fill_cpu_memory(
    cpu: api_pb2.CpuUsage,
    memory: api_pb2.MemoryUsage,
    cache: StatsCache,
    cpu_key: str,
    usage: CgroupUsage,
    now: int,
) -> None:
    """CpuUsage and MemoryUsage from one sample; shared with the pod-level stats."""
    if usage.cpu_usage_ns is not None:
        cpu.timestamp = now
        cpu.usage_core_nano_seconds.value = usage.cpu_usage_ns
        rate = cache.cpu.nano_cores(cpu_key, usage.cpu_usage_ns, now)
        if rate is not None:
            cpu.usage_nano_cores.value = rate
    if usage.memory_usage is None:
        return
    memory.timestamp = now
    memory.usage_bytes.value = usage.memory_usage
    working_set = usage.working_set or 0
    memory.working_set_bytes.value = working_set
    if usage.memory_limit is not None:
        memory.available_bytes.value = max(usage.memory_limit - working_set, 0)
    if usage.rss is not None:
        memory.rss_bytes.value = usage.rss
    if usage.page_faults is not None:
        memory.page_faults.value = usage.page_faults
    if usage.major_page_faults is not None:
        memory.major_page_faults.value = usage.major_page_faults


def swap_usage(usage: CgroupUsage, now: int) -> api_pb2.SwapUsage:
    swap = api_pb2.SwapUsage(timestamp=now)
    swap.swap_usage_bytes.value = usage.swap_usage or 0
    if usage.swap_limit is not None:
        swap.swap_available_bytes.value = max(usage.swap_limit - (usage.swap_usage or 0), 0)
    return swap


def layer_mountpoint(ctx: ShimContext, cache: StatsCache) -> str:
    try:
        return cache.images_mountpoint(ctx)
    except Exception as err:  # the engine is briefly unreachable: the sizes still stand
        log.debug("no image filesystem for writable layers: %s", err)
        return ""


def _writable_layer(
    cache: StatsCache, container_id: str, mountpoint: str
) -> api_pb2.FilesystemUsage:
    """Always present, zero when the size is unknown (containerd reports it the same way)."""
    layer = cache.layers.usage(container_id)
    return api_pb2.FilesystemUsage(
        timestamp=layer.timestamp if layer is not None else time.time_ns(),
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=mountpoint),
        used_bytes=api_pb2.UInt64Value(value=layer.used_bytes if layer is not None else 0),
        inodes_used=api_pb2.UInt64Value(value=layer.inodes_used if layer is not None else 0),
    )
