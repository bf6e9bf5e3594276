"""PodSandboxStats and ListPodSandboxStats (containerd's `sandbox_stats_linux.go` is the model).

CPU, memory and process count come from the pod's cgroup when the pod has one of its own:
kubelet puts every pod under `linux.cgroup_parent` (`/kubepods/burstable/pod<uid>`, or a
`kubepods-burstable-pod<uid>.slice` with the systemd driver), and the infra container's
cgroup sits directly inside it, so the pod cgroup is that cgroup's parent whichever driver
made it. Without a cgroup parent the pod shares Docker's default parent with everything else,
and the pod's numbers are the sum of its infra and running containers.

Network counters come from `/proc/<infra pid>/net/dev`, which lists the interfaces of the
network namespace that process is in: no namespace switch, nothing from pyroute2 in the shim.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from dataclasses import dataclass

from cri_api import api_pb2
from shim.cgroups import CgroupPaths, CgroupUsage, sum_usage
from shim.container.stats import (
    fill_cpu_memory,
    layer_mountpoint,
    pod_cpu_key,
    stats_of,
)
from shim.context import ShimContext
from shim.errors import NotFoundError, UnavailableError
from shim.sandbox.convert import sandbox_metadata
from shim.stats_cache import StatsCache, cache_of
from shim.store.container_record import ContainerRecord, ContainerState
from shim.store.sandbox_record import SandboxRecord, SandboxState

log = logging.getLogger(__name__)

DEFAULT_INTERFACE = "eth0"  # the interface CNI is asked to create (containerd's defaultIfName)


def pod_sandbox_stats(
    ctx: ShimContext, request: api_pb2.PodSandboxStatsRequest
) -> api_pb2.PodSandboxStatsResponse:
    record = ctx.store.get(ctx.store.resolve(request.pod_sandbox_id))
    if record is None:  # removed between the two look-ups
        raise NotFoundError(f"pod sandbox {request.pod_sandbox_id!r} not found")
    stats = _sandbox_stats(ctx, cache_of(ctx), record)
    if stats is None:
        raise UnavailableError(
            f"failed to get pod sandbox stats {record.id}: its infra container is not running"
        )
    return api_pb2.PodSandboxStatsResponse(stats=stats)


def list_pod_sandbox_stats(
    ctx: ShimContext, request: api_pb2.ListPodSandboxStatsRequest
) -> api_pb2.ListPodSandboxStatsResponse:
    cache = cache_of(ctx)
    flt = request.filter if request.HasField("filter") else None
    records = ctx.store.all()
    if flt is None or not (flt.id or flt.label_selector):
        cache.infra_pids.forget_all_but(r.id for r in records)
    stats = []
    for record in sorted(records, key=lambda r: r.created_at):
        if flt is not None:
            if flt.id and not record.id.startswith(flt.id):
                continue
            if any(record.labels.get(k) != v for k, v in flt.label_selector.items()):
                continue
        one = _sandbox_stats(ctx, cache, record)
        if one is not None:  # not ready: skipped, as containerd skips an unavailable one
            stats.append(one)
    return api_pb2.ListPodSandboxStatsResponse(stats=stats)


def _sandbox_stats(
    ctx: ShimContext, cache: StatsCache, record: SandboxRecord
) -> api_pb2.PodSandboxStats | None:
    if record.state is not SandboxState.READY:
        return None
    infra = cache.infra_pids.paths(ctx, record.id)
    if infra is None:
        return None
    infra_pid, infra_paths = infra
    containers = ctx.containers.of_sandbox(record.id)
    stats = api_pb2.PodSandboxStats(
        attributes=api_pb2.PodSandboxAttributes(
            id=record.id,
            metadata=sandbox_metadata(record),
            labels=record.labels,
            annotations=record.annotations,
        )
    )
    linux = stats.linux
    usage = _pod_usage(cache, record, infra_paths, containers)
    now = time.time_ns()
    fill_cpu_memory(linux.cpu, linux.memory, cache, pod_cpu_key(record.id), usage, now)
    if usage.process_count is not None:
        linux.process.timestamp = now
        linux.process.process_count.value = usage.process_count
    if not record.host_network:  # a host-network pod's counters would be the host's
        network = _network_usage(cache.reader.proc_root, infra_pid, now)
        if network is not None:
            linux.network.CopyFrom(network)
    mountpoint = layer_mountpoint(ctx, cache)
    linux.containers.extend(
        stats_of(cache, c, mountpoint) for c in sorted(containers, key=lambda c: c.spec.created_at)
    )
    return stats


def _pod_usage(
    cache: StatsCache,
    record: SandboxRecord,
    infra_paths: CgroupPaths,
    containers: list[ContainerRecord],
) -> CgroupUsage:
    reader = cache.reader
    pod_paths = _pod_cgroup(cache, record, infra_paths)
    if pod_paths is not None:
        return reader.usage(pod_paths)
    samples = [reader.usage(infra_paths)]
    for container in containers:
        if container.state is not ContainerState.RUNNING:
            continue
        paths = reader.paths_of_pid(container.pid)
        if paths is not None and reader.belongs_to(paths, container.id):
            samples.append(reader.usage(paths))
    return sum_usage(samples)


def _pod_cgroup(
    cache: StatsCache, record: SandboxRecord, infra_paths: CgroupPaths
) -> CgroupPaths | None:
    """The pod's own cgroup: the infra cgroup's parent, when the sandbox asked for a cgroup
    parent and that parent is indeed where the infra container landed (its last component is
    the same for cgroupfs paths and systemd slice names)."""
    parent_name = _cgroup_parent(record)
    if not parent_name:
        return None
    pod_paths = cache.reader.enclosing(infra_paths)
    if pod_paths is None:
        return None
    wanted = os.path.basename(parent_name.rstrip("/"))
    landed = {os.path.basename(p) for p in [*pod_paths.v1.values(), pod_paths.unified] if p}
    if wanted not in landed:
        log.debug("sandbox %s: not in its cgroup parent %s: %s", record.id, parent_name, landed)
        return None
    return pod_paths


def _cgroup_parent(record: SandboxRecord) -> str:
    if not record.config_b64:
        return ""
    config = api_pb2.PodSandboxConfig()
    try:
        config.ParseFromString(base64.b64decode(record.config_b64))
    except (ValueError, TypeError) as err:
        log.warning("sandbox %s: unreadable stored config: %s", record.id, err)
        return ""
    return config.linux.cgroup_parent


@dataclass(frozen=True)
class InterfaceCounters:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int


def parse_net_dev(text: str) -> list[InterfaceCounters]:
    """`/proc/net/dev`: two header lines, then `name: rx(bytes packets errs drop fifo frame
    compressed multicast) tx(bytes packets errs drop fifo colls carrier compressed)`."""
    counters = []
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        values = rest.split()
        if not sep or len(values) < 16:
            continue
        try:
            rx_bytes, rx_errors = int(values[0]), int(values[2])
            tx_bytes, tx_errors = int(values[8]), int(values[10])
        except ValueError:
            continue
        counters.append(InterfaceCounters(name.strip(), rx_bytes, rx_errors, tx_bytes, tx_errors))
    return counters


def _network_usage(proc_root: str, pid: int, now: int) -> api_pb2.NetworkUsage | None:
    try:
        with open(os.path.join(proc_root, str(pid), "net", "dev"), encoding="ascii") as f:
            counters = parse_net_dev(f.read())
    except OSError as err:
        log.debug("no network counters for pid %d: %s", pid, err)
        return None
    # Loopback traffic never leaves the pod; cadvisor leaves `lo` out of its totals as well.
    interfaces = [_interface_usage(c) for c in counters if c.name != "lo"]
    network = api_pb2.NetworkUsage(timestamp=now, interfaces=interfaces)
    for usage in interfaces:
        if usage.name == DEFAULT_INTERFACE:
            network.default_interface.CopyFrom(usage)
    return network


def _interface_usage(c: InterfaceCounters) -> api_pb2.NetworkInterfaceUsage:
    return api_pb2.NetworkInterfaceUsage(
        name=c.name,
        rx_bytes=api_pb2.UInt64Value(value=c.rx_bytes),
        rx_errors=api_pb2.UInt64Value(value=c.rx_errors),
        tx_bytes=api_pb2.UInt64Value(value=c.tx_bytes),
        tx_errors=api_pb2.UInt64Value(value=c.tx_errors),
    )
