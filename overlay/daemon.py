"""The node daemon's recipe (CROSS-NODE.md section 8, "Data flow"), on one asyncio loop.

    config (retry 1 s) → external interface → backend.prepare (VTEP, MAC known) → lease →
    backend.configure (address, up, MAC check) → iptables → first snapshot of the peers
    applied (stale entries removed) → subnet.env written (ready) → long-running tasks.

The tasks: lease renewal, the lease watcher (which also notices our own key vanishing), the
kernel check (a deleted device, route, neighbour or FDB entry comes back), the iptables
resync and the optional healthz server. A store outage only makes them retry with back-off:
the kernel keeps what it has, so existing traffic flows on. The daemon leaves its lease and
the kernel state in place when it exits, so a restart changes nothing for the peers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pyroute2 import AsyncIPRoute

from overlay.backend import Backend
from overlay.backend.hostgw import HostGwBackend
from overlay.backend.kernel import Kernel
from overlay.backend.vxlan import VxlanBackend
from overlay.config import BACKEND_HOST_GW, NetworkConfig
from overlay.errors import BackendError, LeaseRevoked, TrafficError
from overlay.iface import find_external_interface
from overlay.store.kv import StoreError
from overlay.store.leases import ConfigMissing, Lease, LeaseAttrs, SubnetManager
from overlay.subnetfile import SubnetEnv, read_previous, write_subnet_file
from overlay.traffic import TrafficRules
from overlay.watch import LeaseCache, LeaseWatcher, PeerChange

log = logging.getLogger(__name__)

T = TypeVar("T")

CONFIG_RETRY = 1.0  # flannel's getConfig loop
RETRY_MIN = 0.5
RETRY_MAX = 10.0
CHECK_INTERVAL = 2.0  # how soon a deleted device or route comes back
BRIDGE_NF_CALL_IPTABLES = "/proc/sys/net/bridge/bridge-nf-call-iptables"


@dataclass
class Options:
    ifaces: list[str] = field(default_factory=list)
    iface_regex: list[str] = field(default_factory=list)
    iface_can_reach: str | None = None
    public_ip: str | None = None
    subnet_file: str = "/run/flannel/subnet.env"
    renew_margin: float = 3600.0
    ip_masq: bool = False
    random_fully: bool = True
    forward_rules: bool = True
    iptables_resync: float = 5.0
    healthz_ip: str = "0.0.0.0"
    healthz_port: int = 0
    resync_interval: float = 600.0


async def retry(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` until the store answers: an outage is waited out, never fatal."""
    delay = RETRY_MIN
    while True:
        try:
            return await call()
        except StoreError as exc:
            log.warning("failed to %s: %s; retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)


class Daemon:
    def __init__(self, manager: SubnetManager, options: Options) -> None:
        self.manager = manager
        self.options = options
        self.lease: Lease | None = None
        self.backend: Backend | None = None
        self.cache: LeaseCache | None = None
        self.kernel_lock = asyncio.Lock()  # one netlink conversation at a time

    async def _config(self) -> NetworkConfig:
        while True:
            try:
                config = await self.manager.get_network_config()
            except ConfigMissing as exc:
                log.warning("%s (retrying in %.0fs)", exc, CONFIG_RETRY)
            except StoreError as exc:
                log.warning("failed to read the network config: %s (retrying)", exc)
            else:
                log.info(
                    "network config: Network %s SubnetLen %d SubnetMin %s SubnetMax %s Backend %s",
                    config.network,
                    config.subnet_len,
                    config.subnet_min.network_address,
                    config.subnet_max.network_address,
                    config.backend,
                )
                return config
            await asyncio.sleep(CONFIG_RETRY)

    async def _apply(self, changes: list[PeerChange], snapshot: list[Lease] | None) -> None:
        assert self.backend is not None
        async with self.kernel_lock:
            await self.backend.apply(changes, snapshot)

    async def _republish(self, attrs: LeaseAttrs) -> None:
        assert self.lease is not None
        lease = self.lease
        self.lease = await retry(
            "republish the lease", lambda: self.manager.update_attrs(lease, attrs)
        )
        log.info("republished lease %s with %s", self.lease.subnet, attrs.backend_data)
        if self.cache is not None:
            self.cache.own = self.lease

    async def run(self, ipr: AsyncIPRoute) -> None:
        """Set up, then serve until cancelled; raises LeaseRevoked (and fatal errors)."""
        opts = self.options
        kernel = Kernel(ipr)
        # 1. The network config, waited for while absent.
        config = await self._config()
        # 2. The underlay interface and the address we publish.
        ext = await find_external_interface(
            kernel, opts.ifaces, opts.iface_regex, opts.iface_can_reach, opts.public_ip
        )
        log.info("using interface %s (%s), public IP %s", ext.name, ext.address, ext.public_ip)
        backend: Backend
        if config.backend.type == BACKEND_HOST_GW:
            backend = HostGwBackend(kernel, ext)
        else:
            backend = VxlanBackend(kernel, ext, config.backend, config.network)
        self.backend = backend
        # 3. The device, reusing the MAC this node published last time.
        previous = read_previous(opts.subnet_file)
        prev_subnet = previous.subnet if previous.network == config.network else None
        own = await retry(
            "look up this node's lease",
            lambda: self.manager.find_own_lease(ext.public_ip, prev_subnet),
        )
        attrs = await backend.prepare(own)
        # 4. The lease.
        self.lease = await retry(
            "acquire a subnet lease", lambda: self.manager.acquire_lease(config, attrs, prev_subnet)
        )
        # 5. Address, up, MAC check (republish if the MAC moved).
        republish = await backend.configure(self.lease)
        if republish is not None:
            await self._republish(republish)
        # 6. iptables.
        traffic = TrafficRules(
            config.network,
            self.lease.subnet,
            forward=opts.forward_rules,
            masquerade=opts.ip_masq,
            random_fully=opts.random_fully,
        )
        await asyncio.to_thread(traffic.sync)
        if not os.path.exists(BRIDGE_NF_CALL_IPTABLES):
            # flanneld exits here; a node without br_netfilter still routes pod traffic, only
            # bridged traffic skips iptables (CROSS-NODE.md section 6, pitfall 6): warn.
            log.warning(
                "%s is missing: is the br_netfilter module loaded?", BRIDGE_NF_CALL_IPTABLES
            )
        # 7. The peers: the first snapshot is applied (and stale entries removed) before the
        # node says it is ready, so a pod started right after reaches every peer.
        self.cache = LeaseCache(self.lease)
        watcher = LeaseWatcher(
            self.manager, self.cache, self._apply, resync_interval=opts.resync_interval
        )
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(watcher.run(), name="lease watcher")
            await watcher.synced.wait()
            # 8. Ready.
            write_subnet_file(
                opts.subnet_file,
                SubnetEnv(config.network, self.lease.subnet, backend.mtu, opts.ip_masq),
            )
            log.info(
                "wrote %s: subnet %s, MTU %d", opts.subnet_file, self.lease.subnet, backend.mtu
            )
            tasks.create_task(self._renew_forever(), name="lease renewal")
            tasks.create_task(self._check_forever(), name="kernel check")
            tasks.create_task(self._traffic_forever(traffic), name="iptables resync")
            if opts.healthz_port:
                tasks.create_task(serve_healthz(opts.healthz_ip, opts.healthz_port), name="healthz")

    async def _renew_forever(self) -> None:
        while True:
            lease = self.lease
            assert lease is not None
            if lease.is_reservation:
                log.info("subnet %s is a reservation: nothing to renew", lease.subnet)
                return
            # Renew `margin` before expiry; with a TTL shorter than the margin (tests), at
            # half-life, so a live daemon never lets its lease lapse.
            margin = min(self.options.renew_margin, lease.ttl / 2)
            await asyncio.sleep(max(0.0, lease.expires_at - margin - time.monotonic()))
            delay = RETRY_MIN
            while True:
                try:
                    self.lease = await self.manager.renew_lease(lease)
                    break
                except StoreError as exc:
                    log.warning(
                        "failed to renew lease %s: %s; retrying in %.1fs", lease.subnet, exc, delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
            if self.cache is not None:
                self.cache.own = self.lease

    async def _check_forever(self) -> None:
        assert self.backend is not None
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            try:
                async with self.kernel_lock:
                    republish = await self.backend.check()
                if republish is not None:
                    await self._republish(republish)
            except BackendError as exc:
                log.error("kernel check: %s", exc)

    async def _traffic_forever(self, traffic: TrafficRules) -> None:
        while True:
            await asyncio.sleep(self.options.iptables_resync)
            started = time.monotonic()
            try:
                await asyncio.to_thread(traffic.sync)
            except TrafficError as exc:
                log.error("%s", exc)
            took = time.monotonic() - started
            if took > self.options.iptables_resync:
                log.warning("iptables resync took %.1fs (the xtables lock is busy?)", took)


async def serve_healthz(host: str, port: int) -> None:
    """flanneld's ``/healthz``: 200 while the daemon runs (it only starts once it is ready)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            path = request.split(b" ")[1] if request.count(b" ") >= 2 else b""
            ok = path.split(b"?")[0] == b"/healthz"
            body = b"flanneld is running\n" if ok else b"not found\n"
            status = b"200 OK" if ok else b"404 Not Found"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    log.info("healthz on http://%s:%d/healthz", host, port)
    async with server:
        await server.serve_forever()


__all__ = ["Daemon", "LeaseRevoked", "Options", "retry", "serve_healthz"]
