"""Everything an RPC handler needs, built once at start-up and passed to each verb."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from cnilib.atomic import write_atomic
from shim.config import ShimConfig
from shim.engine.protocol import InfraRuntime
from shim.engine_health import EngineHealth
from shim.events.hub import ContainerEvents
from shim.metrics.registry import ShimMetrics
from shim.sandbox.network import PodNetwork
from shim.store.container_store import ContainerStore
from shim.store.liveness import InfraLiveness
from shim.store.sandbox_store import SandboxStore

if TYPE_CHECKING:
    from shim.stats_cache import StatsCache
    from shim.streaming.server import StreamingServer


@dataclass
class PodCIDRs:
    """The pod CIDR(s) kubelet sends with UpdateRuntimeConfig, kept across restarts and given
    to plugins as the `ipRanges` capability."""

    path: str
    cidrs: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                self.cidrs = list(json.load(f)["podCIDRs"])
        except FileNotFoundError:
            self.cidrs = []

    def set(self, cidrs: list[str]) -> None:
        with self._lock:
            write_atomic(self.path, json.dumps({"podCIDRs": cidrs}).encode())
            self.cidrs = cidrs


class ContainerLogs(Protocol):
    """The owner of every container's CRI log file (shim.container.log_follower)."""

    def prepare(self, container_id: str, path: str) -> None: ...
    def follow(self, container_id: str, path: str, tty: bool) -> None: ...
    def drain(self, container_id: str, path: str, tty: bool) -> None: ...
    def wait_complete(self, container_id: str, timeout: float) -> bool: ...
    def notify_exited(self, container_id: str) -> None: ...
    def reopen(self, container_id: str) -> None: ...
    def forget(self, container_id: str) -> None: ...
    def close(self) -> None: ...


@dataclass
class ShimContext:
    config: ShimConfig
    store: SandboxStore
    infra: InfraRuntime
    network: PodNetwork
    pod_cidrs: PodCIDRs
    infra_oom_score_adj: int
    logs: ContainerLogs
    liveness: InfraLiveness = field(default_factory=InfraLiveness)
    # Set once the store holds every sandbox and container again (start-up recovery): until
    # then only Version and Status answer, so kubelet never sees a half-rebuilt view.
    recovered: threading.Event = field(default_factory=threading.Event)
    # Set once start-up CNI garbage collection is over: no new pod gets a network before it.
    collected: threading.Event = field(default_factory=threading.Event)
    # What the stats RPCs keep between calls (shim.stats_cache.cache_of), made on first use.
    stats_cache: StatsCache | None = None
    containers: ContainerStore = field(default_factory=ContainerStore)
    # The server behind the Exec/Attach/PortForward URLs (shim.streaming); main starts it.
    streaming: StreamingServer | None = None
    # What the metrics families observe (shim.metrics), served on --metrics-address if set.
    metrics: ShimMetrics = field(default_factory=ShimMetrics)
    # The GetContainerEvents stream's source: every verb reports its state changes here.
    events: ContainerEvents = field(default_factory=ContainerEvents)
    # Docker's health as Status reports it; main starts its pinger (shim.engine_health).
    engine_health: EngineHealth = field(init=False)

    def __post_init__(self) -> None:
        self.engine_health = EngineHealth(self.infra.ping)

    @property
    def owner(self) -> str:
        """The owner label of every container this shim creates: its root directory."""
        return os.path.abspath(self.config.root_directory)

    def netns_path(self, sandbox_id: str) -> str:
        return os.path.join(self.config.root_directory, "netns", sandbox_id)
