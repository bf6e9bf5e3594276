"""The host-gw backend (CROSS-NODE.md section 3): a route per peer via its public IP.

Only works between nodes on one L2 segment, so it refuses to start when the public IP is not
the interface's own address (behind NAT), and refuses peers whose public IP the kernel does not
reach directly through the external interface (a route with a gateway, or another device).
"""

from __future__ import annotations

import ipaddress
import logging

from overlay.backend import ExternalInterface
from overlay.backend.kernel import Kernel, Route
from overlay.backend.routes import sync_routes
from overlay.config import BACKEND_HOST_GW
from overlay.errors import BackendError
from overlay.store.leases import Lease, LeaseAttrs
from overlay.watch import PeerChange

log = logging.getLogger(__name__)


class HostGwBackend:
    type = BACKEND_HOST_GW

    def __init__(self, kernel: Kernel, ext: ExternalInterface) -> None:
        self.kernel = kernel
        self.ext = ext
        self.routes: dict[ipaddress.IPv4Network, Route] = {}
        self.ready = False

    @property
    def mtu(self) -> int:
        return self.ext.mtu  # no encapsulation

    async def prepare(self, previous: Lease | None) -> LeaseAttrs:
        if self.ext.public_ip != self.ext.address:
            raise BackendError(
                f"failed to start the host-gw backend: public IP {self.ext.public_ip} is not the "
                f"address {self.ext.address} of {self.ext.name} (probably behind NAT); host-gw "
                "needs the nodes on one L2 segment"
            )
        return LeaseAttrs(public_ip=self.ext.public_ip, backend_type=BACKEND_HOST_GW)

    async def configure(self, lease: Lease) -> LeaseAttrs | None:
        self.ready = True
        return None

    async def _route_of(self, lease: Lease) -> Route | None:
        if lease.attrs.backend_type != BACKEND_HOST_GW:
            log.warning(
                "ignoring lease %s: backend %r is not host-gw",
                lease.subnet,
                lease.attrs.backend_type,
            )
            return None
        via = await self.kernel.route_to(lease.attrs.public_ip)
        if via is None or via.gateway is not None or via.oif != self.ext.index:
            log.warning(
                "ignoring lease %s: its public IP %s is not on the L2 segment of %s",
                lease.subnet,
                lease.attrs.public_ip,
                self.ext.name,
            )
            return None
        return Route(lease.subnet, lease.attrs.public_ip, self.ext.index, onlink=False)

    async def apply(self, changes: list[PeerChange], snapshot: list[Lease] | None) -> None:
        for change in changes:
            try:
                if change.kind == "added":
                    route = await self._route_of(change.lease)
                    if route is None:
                        if self.routes.pop(change.lease.subnet, None) is not None:
                            await self.kernel.delete_route(change.lease.subnet)
                        continue
                    await self.kernel.replace_route(route)
                    self.routes[route.dst] = route
                    log.info("peer %s via %s", route.dst, route.gateway)
                else:
                    self.routes.pop(change.lease.subnet, None)
                    await self.kernel.delete_route(change.lease.subnet)
                    log.info("peer %s removed", change.lease.subnet)
            except BackendError as exc:
                log.error("peer %s: %s", change.lease.subnet, exc)
        if snapshot is not None:
            wanted = {lease.subnet for lease in snapshot}
            for subnet in [s for s in self.routes if s not in wanted]:
                del self.routes[subnet]
            await sync_routes(self.kernel, self.routes, remove_unknown=True)

    async def check(self) -> LeaseAttrs | None:
        # flannel re-adds missing routes every 10 s; we check on the daemon's check interval.
        await sync_routes(self.kernel, self.routes, remove_unknown=True)
        return None
