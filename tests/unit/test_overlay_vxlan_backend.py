"""The VXLAN backend's bookkeeping against an in-memory kernel: the device as flannel makes it,
the three entries per peer, stale entries removed after a snapshot, a changed VtepMAC's old
FDB entry dropped, a deleted device recreated with its MAC and repopulated."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any, cast

from pyroute2 import AsyncIPRoute

from overlay.backend import ExternalInterface
from overlay.backend.kernel import FdbEntry, Kernel, Link, Neighbour, Route
from overlay.backend.vxlan import VxlanBackend
from overlay.config import BackendConfig
from overlay.store.leases import Lease, LeaseAttrs
from overlay.watch import PeerChange

IP = ipaddress.IPv4Address
NET = ipaddress.IPv4Network
EXT = ExternalInterface(2, "eth0", IP("192.0.2.1"), 1500, IP("192.0.2.1"))


class FakeKernel(Kernel):
    def __init__(self) -> None:
        super().__init__(cast(AsyncIPRoute, None))
        self.devices: dict[str, Link] = {}
        self.addrs: dict[int, list[ipaddress.IPv4Interface]] = {}
        self.routes: dict[NET, Route] = {}
        self.neigh: dict[int, dict[IP, str]] = {}
        self.fdb: dict[int, set[tuple[str, IP]]] = {}
        self.next_index = 10
        self.created: list[dict[str, Any]] = []

    async def link(self, name: str) -> Link | None:
        return self.devices.get(name)

    async def link_by_index(self, index: int) -> Link | None:
        return next((lk for lk in self.devices.values() if lk.index == index), None)

    async def create_vxlan(self, name: str, **spec: Any) -> None:
        self.next_index += 1
        self.created.append(spec)
        info = {
            "IFLA_VXLAN_ID": spec["vni"],
            "IFLA_VXLAN_LINK": spec["link_index"],
            "IFLA_VXLAN_LOCAL": str(spec["local"]),
            "IFLA_VXLAN_PORT": spec["port"],
            "IFLA_VXLAN_LEARNING": int(spec["learning"]),
        }
        self.devices[name] = Link(
            self.next_index, name, "vxlan", spec["mac"], spec["mtu"], False, info
        )

    async def delete_link(self, index: int) -> None:
        for name in [n for n, lk in self.devices.items() if lk.index == index]:
            del self.devices[name]
        self.neigh.pop(index, None)
        self.fdb.pop(index, None)
        self.addrs.pop(index, None)
        for dst in [d for d, r in self.routes.items() if r.oif == index]:
            del self.routes[dst]

    async def set_link(self, index: int, **attrs: Any) -> None:
        link = await self.link_by_index(index)
        assert link is not None
        mtu = int(attrs.get("mtu", link.mtu))
        up = link.up or attrs.get("state") == "up"
        mac = str(attrs.get("address", link.mac))
        self.devices[link.name] = Link(link.index, link.name, link.kind, mac, mtu, up, link.info)

    async def addresses(self, index: int) -> list[ipaddress.IPv4Interface]:
        return list(self.addrs.get(index, []))

    async def add_address(self, index: int, address: ipaddress.IPv4Interface) -> None:
        self.addrs.setdefault(index, []).append(address)

    async def delete_address(self, index: int, address: ipaddress.IPv4Interface) -> None:
        self.addrs[index].remove(address)

    async def route_to(self, dst: ipaddress.IPv4Address) -> Route | None:
        return Route(NET(f"{dst}/32"), None, EXT.index, False)

    async def our_routes(self) -> list[Route]:
        return list(self.routes.values())

    async def replace_route(self, route: Route) -> None:
        self.routes[route.dst] = route

    async def delete_route(self, dst: ipaddress.IPv4Network) -> None:
        self.routes.pop(dst, None)

    async def neighbours(self, index: int) -> list[Neighbour]:
        return [Neighbour(d, m, True) for d, m in self.neigh.get(index, {}).items()]

    async def replace_neighbour(self, index: int, dst: ipaddress.IPv4Address, mac: str) -> None:
        self.neigh.setdefault(index, {})[dst] = mac

    async def delete_neighbour(self, index: int, dst: ipaddress.IPv4Address) -> None:
        self.neigh.get(index, {}).pop(dst, None)

    async def fdb_entries(self, index: int) -> list[FdbEntry]:
        return [FdbEntry(m, d) for m, d in self.fdb.get(index, set())]

    async def replace_fdb(self, index: int, mac: str, dst: ipaddress.IPv4Address) -> None:
        entries = self.fdb.setdefault(index, set())
        entries -= {e for e in entries if e[0] == mac}  # REPLACE moves a unicast MAC's dst
        entries.add((mac, dst))

    async def delete_fdb(self, index: int, mac: str, dst: ipaddress.IPv4Address | None) -> None:
        if dst is not None:
            self.fdb.get(index, set()).discard((mac, dst))


def _lease(n: int, mac: str, backend: str = "vxlan") -> Lease:
    data = {"VNI": 1, "VtepMAC": mac} if backend == "vxlan" else None
    return Lease(NET(f"10.244.{n}.0/24"), LeaseAttrs(IP(f"192.0.2.{n}"), backend, data))


def _backend(kernel: FakeKernel, **config: Any) -> VxlanBackend:
    return VxlanBackend(kernel, EXT, BackendConfig(**config), NET("10.244.0.0/16"))


def _state(kernel: FakeKernel, index: int) -> tuple[set[str], dict[IP, str], set[tuple[str, IP]]]:
    routes = {
        f"{r.dst} via {r.gateway} oif {r.oif}{' onlink' if r.onlink else ''}"
        for r in kernel.routes.values()
    }
    return routes, kernel.neigh.get(index, {}), kernel.fdb.get(index, set())


async def _configured(**config: Any) -> tuple[FakeKernel, VxlanBackend, int]:
    """A backend whose own lease (node 1) is prepared and configured, and its device's index."""
    kernel = FakeKernel()
    backend = _backend(kernel, **config)
    own = _lease(1, "02:00:00:00:00:01")
    await backend.prepare(own)
    await backend.configure(own)
    return kernel, backend, kernel.devices["flannel.1"].index


def _routed_peer_2(index: int) -> tuple[set[str], dict[IP, str], set[tuple[str, IP]]]:
    """`_state` when node 2 (MAC ...:02) is the only peer, reached over the device `index`."""
    return (
        {f"10.244.2.0/24 via 10.244.2.0 oif {index} onlink"},
        {IP("10.244.2.0"): "02:00:00:00:00:02"},
        {("02:00:00:00:00:02", IP("192.0.2.2"))},
    )


def test_device_reuses_the_previous_mac_and_gets_its_address() -> None:
    async def run() -> None:
        kernel = FakeKernel()
        backend = _backend(kernel)
        own = _lease(1, "02:00:00:00:00:01")
        attrs = await backend.prepare(own)
        assert attrs.backend_data == {"VNI": 1, "VtepMAC": "02:00:00:00:00:01"}
        spec = kernel.created[0]
        assert (spec["vni"], spec["port"], spec["learning"], spec["mtu"]) == (1, 8472, False, 1450)
        assert spec["local"] == IP("192.0.2.1") and spec["link_index"] == EXT.index
        link = kernel.devices["flannel.1"]
        kernel.addrs[link.index] = [ipaddress.IPv4Interface("10.244.9.0/32")]  # an old lease's
        assert await backend.configure(own) is None
        assert kernel.addrs[link.index] == [ipaddress.IPv4Interface("10.244.1.0/32")]
        assert kernel.devices["flannel.1"].up

    asyncio.run(run())


def test_peers_snapshot_removes_stale_entries_and_a_changed_mac() -> None:
    async def run() -> None:
        kernel, backend, index = await _configured()
        # Left by a node that went away while we were down.
        kernel.neigh[index] = {IP("10.244.7.0"): "02:00:00:00:00:07"}
        kernel.fdb[index] = {("02:00:00:00:00:07", IP("192.0.2.7"))}
        kernel.routes[NET("10.244.7.0/24")] = Route(
            NET("10.244.7.0/24"), IP("10.244.7.0"), index, True
        )
        peer = _lease(2, "02:00:00:00:00:02")
        other = _lease(3, "02:00:00:00:00:03", backend="host-gw")  # not ours to route
        await backend.apply([PeerChange("added", peer), PeerChange("added", other)], [peer, other])
        assert _state(kernel, index) == _routed_peer_2(index)
        moved = _lease(2, "02:00:00:00:00:22")
        await backend.apply([PeerChange("added", moved, peer)], None)
        assert _state(kernel, index)[1:] == (
            {IP("10.244.2.0"): "02:00:00:00:00:22"},
            {("02:00:00:00:00:22", IP("192.0.2.2"))},
        )
        await backend.apply([PeerChange("removed", moved)], None)
        assert _state(kernel, index) == (set(), {}, set())

    asyncio.run(run())


def test_deleted_device_comes_back_with_its_mac_and_peers() -> None:
    async def run() -> None:
        kernel, backend, _ = await _configured()
        peer = _lease(2, "02:00:00:00:00:02")
        await backend.apply([PeerChange("added", peer)], [peer])
        await kernel.delete_link(kernel.devices["flannel.1"].index)
        assert await backend.check() is None
        link = kernel.devices["flannel.1"]
        assert link.mac == "02:00:00:00:00:01" and link.up and link.mtu == 1450
        assert kernel.addrs[link.index] == [ipaddress.IPv4Interface("10.244.1.0/32")]
        assert _state(kernel, link.index) == _routed_peer_2(link.index)
        # A changed MTU is applied in place (flannel#1775).
        await kernel.set_link(link.index, mtu=1400)
        await backend.check()
        assert (
            kernel.devices["flannel.1"].mtu == 1450
            and kernel.devices["flannel.1"].index == link.index
        )

    asyncio.run(run())


def test_direct_routing_on_one_l2_uses_a_plain_route() -> None:
    async def run() -> None:
        kernel, backend, index = await _configured(direct_routing=True)
        peer = _lease(2, "02:00:00:00:00:02")
        await backend.apply([PeerChange("added", peer)], [peer])
        assert _state(kernel, index) == (
            {f"10.244.2.0/24 via 192.0.2.2 oif {EXT.index}"},
            {},
            set(),
        )

    asyncio.run(run())
