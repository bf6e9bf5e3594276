"""The VXLAN backend (CROSS-NODE.md section 2): one VTEP ``flannel.<VNI>`` and, per peer, a
permanent neighbour, an FDB entry and an onlink route.

Deliberate differences from flannel, each fixing a known bug: the VTEP keeps the MAC of this
node's previous lease when it has to be created again (peers keep valid entries); the MAC is
checked after the device is up and put back if something (udev) changed it (flannel#1795); a
changed MTU is applied to an existing device (flannel#1775); entries no lease backs are removed
after every snapshot (flannel#2554); a deleted device is recreated and repopulated.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
from dataclasses import dataclass, replace

from overlay.backend import ExternalInterface
from overlay.backend.kernel import Kernel, Route, random_mac
from overlay.backend.routes import sync_routes
from overlay.config import BACKEND_VXLAN, BackendConfig
from overlay.errors import BackendError
from overlay.store.leases import Lease, LeaseAttrs
from overlay.watch import PeerChange

log = logging.getLogger(__name__)

# Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
ENCAP_OVERHEAD = 50
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class Peer:
    """What the kernel holds for one remote lease."""

    subnet: ipaddress.IPv4Network
    public_ip: ipaddress.IPv4Address
    mac: str
    direct: bool  # DirectRouting on the same L2: a plain route via the peer's public IP

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address


def vtep_mac_of(attrs: LeaseAttrs) -> str | None:
    data = attrs.backend_data or {}
    mac = data.get("VtepMAC") or data.get("vtepmac")
    if isinstance(mac, str) and _MAC.match(mac.lower()):
        return mac.lower()
    return None


class VxlanBackend:
    type = BACKEND_VXLAN

    def __init__(
        self,
        kernel: Kernel,
        ext: ExternalInterface,
        config: BackendConfig,
        network: ipaddress.IPv4Network,
    ) -> None:
        self.kernel = kernel
        self.ext = ext
        self.config = config
        self.network = network
        self.name = f"flannel.{config.vni}"
        self.mac = ""
        self.index = 0
        self.lease: Lease | None = None
        self.peers: dict[ipaddress.IPv4Network, Peer] = {}

    @property
    def mtu(self) -> int:
        return (self.config.mtu or self.ext.mtu) - ENCAP_OVERHEAD

    def attrs(self) -> LeaseAttrs:
        return LeaseAttrs(
            public_ip=self.ext.public_ip,
            backend_type=BACKEND_VXLAN,
            backend_data={"VNI": self.config.vni, "VtepMAC": self.mac},
        )

    # Device.

    def _compatible(self, info: dict[str, object], kind: str) -> bool:
        """flannel's ensureLink comparison; MTU and MAC are fixed in place, not by recreating."""
        return (
            kind == "vxlan"
            and info.get("IFLA_VXLAN_ID") == self.config.vni
            and info.get("IFLA_VXLAN_LINK") == self.ext.index
            and info.get("IFLA_VXLAN_LOCAL") == str(self.ext.public_ip)
            and info.get("IFLA_VXLAN_PORT") == self.config.port
            and bool(info.get("IFLA_VXLAN_LEARNING")) == self.config.learning
            and ("IFLA_VXLAN_GBP" in info) == self.config.gbp
        )

    async def _ensure_device(self, wanted_mac: str) -> None:
        link = await self.kernel.link(self.name)
        if link is not None and not self._compatible(link.info, link.kind):
            log.warning("%s exists with other settings (%s): recreating it", self.name, link.info)
            await self.kernel.delete_link(link.index)
            link = None
        if link is None:
            log.info(
                "creating %s: vxlan id %d local %s dev %s dstport %d mtu %d mac %s",
                self.name,
                self.config.vni,
                self.ext.public_ip,
                self.ext.name,
                self.config.port,
                self.mtu,
                wanted_mac,
            )
            await self.kernel.create_vxlan(
                self.name,
                vni=self.config.vni,
                link_index=self.ext.index,
                local=self.ext.public_ip,
                port=self.config.port,
                learning=self.config.learning,
                gbp=self.config.gbp,
                mtu=self.mtu,
                mac=wanted_mac,
            )
            link = await self.kernel.link(self.name)
            if link is None:
                raise BackendError(f"failed to create {self.name}: gone right after creation")
            _disable_accept_ra(self.name)
        if link.mtu != self.mtu:
            log.info("%s MTU %d -> %d", self.name, link.mtu, self.mtu)
            await self.kernel.set_link(link.index, mtu=self.mtu)
        self.index = link.index
        self.mac = link.mac

    async def _up_and_check_mac(self) -> bool:
        """Bring the device up, then make sure its MAC is still the published one (udev or
        NetworkManager may change it on the way up, flannel#1795). True when the MAC had to
        change, i.e. the lease must be republished."""
        await self.kernel.set_link(self.index, state="up")
        link = await self.kernel.link_by_index(self.index)
        if link is None:
            raise BackendError(f"{self.name} vanished while being brought up")
        if link.mac == self.mac:
            return False
        log.warning(
            "%s MAC changed from %s to %s after up: setting it back", self.name, self.mac, link.mac
        )
        with contextlib.suppress(BackendError):
            await self.kernel.set_link(self.index, address=self.mac)
        link = await self.kernel.link_by_index(self.index)
        if link is not None and link.mac == self.mac:
            return False
        self.mac = link.mac if link is not None else self.mac
        return True

    async def prepare(self, previous: Lease | None) -> LeaseAttrs:
        wanted = (vtep_mac_of(previous.attrs) if previous is not None else None) or random_mac()
        await self._ensure_device(wanted)
        await self._up_and_check_mac()
        return self.attrs()

    async def _ensure_address(self, lease: Lease) -> None:
        # The subnet's .0 as a /32: no subnet or broadcast route appears on flannel.1, and
        # host-to-remote-pod traffic leaves with this source.
        wanted = ipaddress.IPv4Interface(f"{lease.subnet.network_address}/32")
        present = await self.kernel.addresses(self.index)
        for address in present:
            if address != wanted and address.ip in self.network:
                log.info("removing stale address %s from %s", address, self.name)
                await self.kernel.delete_address(self.index, address)
        if wanted not in present:
            await self.kernel.add_address(self.index, wanted)

    async def configure(self, lease: Lease) -> LeaseAttrs | None:
        self.lease = lease
        await self._ensure_address(lease)
        changed = await self._up_and_check_mac()
        published = vtep_mac_of(lease.attrs)
        if changed or published != self.mac:
            # The daemon republishes these attrs; remember them as the published ones.
            self.lease = replace(lease, attrs=self.attrs())
            return self.lease.attrs
        return None

    # Peers.

    async def _direct(self, public_ip: ipaddress.IPv4Address) -> bool:
        if not self.config.direct_routing:
            return False
        route = await self.kernel.route_to(public_ip)
        return route is not None and route.gateway is None and route.oif == self.ext.index

    async def _peer_of(self, lease: Lease) -> Peer | None:
        if lease.attrs.backend_type != BACKEND_VXLAN:
            log.warning(
                "ignoring lease %s: backend %r is not vxlan", lease.subnet, lease.attrs.backend_type
            )
            return None
        mac = vtep_mac_of(lease.attrs)
        if mac is None:
            log.warning(
                "ignoring lease %s: no valid VtepMAC in %s", lease.subnet, lease.attrs.backend_data
            )
            return None
        direct = await self._direct(lease.attrs.public_ip)
        return Peer(lease.subnet, lease.attrs.public_ip, mac, direct)

    def _route(self, peer: Peer) -> Route:
        if peer.direct:
            return Route(peer.subnet, peer.public_ip, self.ext.index, onlink=False)
        return Route(peer.subnet, peer.gateway, self.index, onlink=True)

    async def _install(self, peer: Peer) -> None:
        if not peer.direct:
            # Ordering: neighbour and FDB before the route, so the kernel never ARPs for the
            # gateway (CROSS-NODE.md section 2).
            await self.kernel.replace_neighbour(self.index, peer.gateway, peer.mac)
            await self.kernel.replace_fdb(self.index, peer.mac, peer.public_ip)
        await self.kernel.replace_route(self._route(peer))

    async def _uninstall(self, peer: Peer, keep_route: bool = False) -> None:
        # Best effort, every step: a half-removed peer must not stop the others.
        steps = []
        if not keep_route:
            steps.append(self.kernel.delete_route(peer.subnet))
        if not peer.direct:
            steps.append(self.kernel.delete_neighbour(self.index, peer.gateway))
            steps.append(self.kernel.delete_fdb(self.index, peer.mac, peer.public_ip))
        for step in steps:
            try:
                await step
            except BackendError as exc:
                log.warning("removing peer %s: %s", peer.subnet, exc)

    async def _add(self, lease: Lease) -> None:
        peer = await self._peer_of(lease)
        old = self.peers.get(lease.subnet)
        if peer is None:
            if old is not None:
                await self._uninstall(old)
                del self.peers[lease.subnet]
            return
        if old is not None and old != peer:
            # A changed VtepMAC or public IP: drop the old FDB entry flannel would leave behind.
            await self._uninstall(old, keep_route=True)
        await self._install(peer)
        self.peers[lease.subnet] = peer
        log.info(
            "peer %s via %s (%s)",
            peer.subnet,
            peer.public_ip,
            "direct" if peer.direct else peer.mac,
        )

    async def _remove(self, lease: Lease) -> None:
        peer = self.peers.pop(lease.subnet, None)
        if peer is None:
            peer = await self._peer_of(lease)
        if peer is not None:
            await self._uninstall(peer)
            log.info("peer %s removed", lease.subnet)

    async def apply(self, changes: list[PeerChange], snapshot: list[Lease] | None) -> None:
        for change in changes:
            try:
                if change.kind == "added":
                    await self._add(change.lease)
                else:
                    await self._remove(change.lease)
            except BackendError as exc:
                # Leave it to the next check: one bad peer must not block the rest.
                log.error("peer %s: %s", change.lease.subnet, exc)
        if snapshot is not None:
            wanted = {lease.subnet for lease in snapshot}
            for subnet in [s for s in self.peers if s not in wanted]:
                await self._uninstall(self.peers.pop(subnet))
            await self._reconcile()

    async def _reconcile(self) -> None:
        """Kernel entries on our device that no current peer backs go; missing ones come back."""
        vxlan_peers = [p for p in self.peers.values() if not p.direct]
        want_neigh = {p.gateway: p.mac for p in vxlan_peers}
        want_fdb = {(p.mac, p.public_ip) for p in vxlan_peers}
        for neighbour in await self.kernel.neighbours(self.index):
            if neighbour.permanent and want_neigh.get(neighbour.dst) != neighbour.mac:
                log.info("removing stale neighbour %s %s", neighbour.dst, neighbour.mac)
                await self.kernel.delete_neighbour(self.index, neighbour.dst)
        present_neigh = {
            n.dst: n.mac for n in await self.kernel.neighbours(self.index) if n.permanent
        }
        for entry in await self.kernel.fdb_entries(self.index):
            if entry.dst is not None and (entry.mac, entry.dst) not in want_fdb:
                log.info("removing stale fdb entry %s dst %s", entry.mac, entry.dst)
                await self.kernel.delete_fdb(self.index, entry.mac, entry.dst)
        present_fdb = {(e.mac, e.dst) for e in await self.kernel.fdb_entries(self.index)}
        for peer in vxlan_peers:
            if present_neigh.get(peer.gateway) != peer.mac:
                await self.kernel.replace_neighbour(self.index, peer.gateway, peer.mac)
            if (peer.mac, peer.public_ip) not in present_fdb:
                await self.kernel.replace_fdb(self.index, peer.mac, peer.public_ip)
        await sync_routes(
            self.kernel,
            {p.subnet: self._route(p) for p in self.peers.values()},
            remove_unknown=True,
        )

    async def check(self) -> LeaseAttrs | None:
        if self.lease is None:
            return None
        link = await self.kernel.link(self.name)
        republish = None
        if (
            link is None
            or not link.up
            or link.mtu != self.mtu
            or not self._compatible(link.info, link.kind)
        ):
            log.warning("%s is missing or changed: restoring it", self.name)
            await self._ensure_device(self.mac or random_mac())
            republish = await self.configure(self.lease)
        else:
            self.index = link.index
            if link.mac != self.mac:
                republish = await self.configure(self.lease)
            else:
                await self._ensure_address(self.lease)
        await self._reconcile()
        return republish


def _disable_accept_ra(name: str) -> None:
    # flannel sets accept_ra=0 on the VTEP: router advertisements must not configure it.
    with (
        contextlib.suppress(OSError),
        open(f"/proc/sys/net/ipv6/conf/{name}/accept_ra", "w") as f,
    ):
        f.write("0")
