"""The daemon's netlink calls, over pyroute2's asyncio socket (one event loop, no threads).

Each helper is idempotent in the sense STYLE.md asks for: "replace" creates or updates,
deletes accept "already gone", so a backend can apply the same desired state again and again
(after a restart, a deleted device, a relist) without tracking what it did before.

Our routes carry a private routing protocol number (`RTPROT_OVERLAY`, ``proto 241`` in
``ip route``) so that start-up reconcile can tell them from every other route on the node and
remove the ones no lease backs any more (the fix for flannel#2554).
"""

from __future__ import annotations

import errno
import ipaddress
import random
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from overlay.errors import BackendError

RTPROT_OVERLAY = 241
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
RT_TABLE_MAIN = 254
AF_INET = 2
IFF_UP = 0x1

_GONE = (errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL, errno.ENXIO)


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str
    mac: str
    mtu: int
    up: bool
    info: dict[str, Any]  # IFLA_INFO_DATA as a flat dict (e.g. IFLA_VXLAN_ID)


@dataclass(frozen=True)
class Route:
    dst: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address | None
    oif: int
    onlink: bool


@dataclass(frozen=True)
class Neighbour:
    dst: ipaddress.IPv4Address
    mac: str
    permanent: bool


@dataclass(frozen=True)
class FdbEntry:
    mac: str
    dst: ipaddress.IPv4Address | None


def random_mac() -> str:
    """A random locally administered unicast MAC, set at creation so udev has nothing to
    assign later (flannel#1795)."""
    octets = [random.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFE) | 0x02
    return ":".join(f"{o:02x}" for o in octets)


def _link(msg: Any) -> Link:
    linkinfo = msg.get("IFLA_LINKINFO")
    kind = ""
    info: dict[str, Any] = {}
    if linkinfo is not None:
        kind = str(linkinfo.get("IFLA_INFO_KIND") or "")
        data = linkinfo.get("IFLA_INFO_DATA")
        if data is not None and hasattr(data, "get"):
            for name, value in data.get("attrs", []):
                info[name] = value
    return Link(
        index=int(msg["index"]),
        name=str(msg.get("IFLA_IFNAME")),
        kind=kind,
        mac=str(msg.get("IFLA_ADDRESS") or "").lower(),
        mtu=int(msg.get("IFLA_MTU") or 0),
        up=bool(int(msg["flags"]) & IFF_UP),
        info=info,
    )


class Kernel:
    """The netlink operations the backends use, on one socket in the daemon's namespace."""

    def __init__(self, ipr: AsyncIPRoute) -> None:
        self.ipr = ipr

    async def _call(self, what: str, coro: Any, gone_ok: bool = False) -> Any:
        try:
            return await coro
        except NetlinkError as exc:
            if gone_ok and exc.code in _GONE:
                return None
            raise BackendError(f"failed to {what}: {exc}") from exc

    # Links.

    async def link(self, name: str) -> Link | None:
        return await self._get_link(name, ifname=name)

    async def link_by_index(self, index: int) -> Link | None:
        return await self._get_link(index, index=index)

    async def _get_link(self, key: str | int, **match: Any) -> Link | None:
        """The link `match` names (ifname= or index=), None when there is none."""
        msgs = await self._call(f"get link {key}", self.ipr.link("get", **match), gone_ok=True)
        return None if msgs is None else _link(msgs[0])

    async def links(self) -> list[Link]:
        return [_link(m) async for m in await self.ipr.link("dump")]

    async def create_vxlan(
        self,
        name: str,
        *,
        vni: int,
        link_index: int,
        local: ipaddress.IPv4Address,
        port: int,
        learning: bool,
        gbp: bool,
        mtu: int,
        mac: str,
    ) -> None:
        spec: dict[str, Any] = {
            "ifname": name,
            "kind": "vxlan",
            "vxlan_id": vni,
            "vxlan_link": link_index,
            "vxlan_local": str(local),
            "vxlan_port": port,
            "vxlan_learning": 1 if learning else 0,
            "mtu": mtu,
            "address": mac,
        }
        if gbp:
            spec["vxlan_gbp"] = True
        await self._call(f"create vxlan device {name}", self.ipr.link("add", **spec))

    async def delete_link(self, index: int) -> None:
        await self._call(f"delete link {index}", self.ipr.link("del", index=index), gone_ok=True)

    async def set_link(self, index: int, **attrs: Any) -> None:
        await self._call(f"set {attrs} on link {index}", self.ipr.link("set", index=index, **attrs))

    # Addresses.

    async def addresses(self, index: int) -> list[ipaddress.IPv4Interface]:
        found = []
        async for msg in await self.ipr.addr("dump", index=index, family=AF_INET):
            if int(msg["index"]) == index:
                found.append(
                    ipaddress.IPv4Interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
                )
        return found

    async def add_address(self, index: int, address: ipaddress.IPv4Interface) -> None:
        try:
            await self.ipr.addr(
                "add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
            )
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise BackendError(
                    f"failed to add address {address} to link {index}: {exc}"
                ) from exc

    async def delete_address(self, index: int, address: ipaddress.IPv4Interface) -> None:
        await self._call(
            f"delete address {address} from link {index}",
            self.ipr.addr(
                "del", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
            ),
            gone_ok=True,
        )

    # Routes.

    async def route_to(self, dst: ipaddress.IPv4Address) -> Route | None:
        """The kernel's route lookup for ``dst`` (no packet is sent); None if unreachable."""
        try:
            msgs = await self.ipr.route("get", dst=str(dst))
        except NetlinkError as exc:
            if exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH, *_GONE):
                return None
            raise BackendError(f"failed to look up a route to {dst}: {exc}") from exc
        msg = msgs[0]
        gateway = msg.get("RTA_GATEWAY")
        return Route(
            dst=ipaddress.IPv4Network(f"{dst}/32"),
            gateway=ipaddress.IPv4Address(gateway) if gateway else None,
            oif=int(msg.get("RTA_OIF") or 0),
            onlink=False,
        )

    async def our_routes(self) -> list[Route]:
        """Every route in the main table tagged with our protocol number."""
        found = []
        async for msg in await self.ipr.route("dump", family=AF_INET, table=RT_TABLE_MAIN):
            if int(msg["proto"]) != RTPROT_OVERLAY:
                continue
            gateway = msg.get("RTA_GATEWAY")
            found.append(
                Route(
                    dst=ipaddress.IPv4Network(
                        f"{msg.get('RTA_DST') or '0.0.0.0'}/{msg['dst_len']}"
                    ),
                    gateway=ipaddress.IPv4Address(gateway) if gateway else None,
                    oif=int(msg.get("RTA_OIF") or 0),
                    onlink=bool(int(msg["flags"]) & RTNH_F_ONLINK),
                )
            )
        return found

    async def replace_route(self, route: Route) -> None:
        spec: dict[str, Any] = {
            "dst": str(route.dst),
            "oif": route.oif,
            "proto": RTPROT_OVERLAY,
            "table": RT_TABLE_MAIN,
            "scope": 0,  # universe: the gateway is a next hop, not a local destination
        }
        if route.gateway is not None:
            spec["gateway"] = str(route.gateway)
        if route.onlink:
            spec["flags"] = RTNH_F_ONLINK
        await self._call(f"replace route {route.dst}", self.ipr.route("replace", **spec))

    async def delete_route(self, dst: ipaddress.IPv4Network) -> None:
        await self._call(
            f"delete route {dst}",
            self.ipr.route("del", dst=str(dst), proto=RTPROT_OVERLAY, table=RT_TABLE_MAIN),
            gone_ok=True,
        )

    # Neighbours (ARP) and the VXLAN forwarding database.

    async def neighbours(self, index: int) -> list[Neighbour]:
        found = []
        async for msg in await self.ipr.neigh("dump", ifindex=index, family=AF_INET):
            if int(msg["ifindex"]) != index or not msg.get("NDA_DST"):
                continue
            found.append(
                Neighbour(
                    dst=ipaddress.IPv4Address(msg.get("NDA_DST")),
                    mac=str(msg.get("NDA_LLADDR") or "").lower(),
                    permanent=bool(int(msg["state"]) & NUD_PERMANENT),
                )
            )
        return found

    async def replace_neighbour(self, index: int, dst: ipaddress.IPv4Address, mac: str) -> None:
        await self._call(
            f"set neighbour {dst} on link {index}",
            self.ipr.neigh("replace", ifindex=index, dst=str(dst), lladdr=mac, state=NUD_PERMANENT),
        )

    async def delete_neighbour(self, index: int, dst: ipaddress.IPv4Address) -> None:
        await self._call(
            f"delete neighbour {dst} on link {index}",
            self.ipr.neigh("del", ifindex=index, dst=str(dst)),
            gone_ok=True,
        )

    async def fdb_entries(self, index: int) -> list[FdbEntry]:
        found = []
        async for msg in await self.ipr.fdb("dump", ifindex=index):
            if int(msg["ifindex"]) != index:
                continue
            dst = msg.get("NDA_DST")
            found.append(
                FdbEntry(
                    mac=str(msg.get("NDA_LLADDR") or "").lower(),
                    dst=ipaddress.IPv4Address(dst) if dst else None,
                )
            )
        return found

    async def replace_fdb(self, index: int, mac: str, dst: ipaddress.IPv4Address) -> None:
        # pyroute2 fills state/flags in only for add/append/del: say them explicitly
        # (CROSS-NODE.md section 8). For a unicast MAC only REPLACE moves its dst (vxlan_core.c).
        await self._call(
            f"set fdb entry {mac} dst {dst} on link {index}",
            self.ipr.fdb(
                "replace",
                ifindex=index,
                lladdr=mac,
                dst=str(dst),
                state=NUD_PERMANENT,
                flags=NTF_SELF,
            ),
        )

    async def delete_fdb(self, index: int, mac: str, dst: ipaddress.IPv4Address | None) -> None:
        spec: dict[str, Any] = {
            "ifindex": index,
            "lladdr": mac,
            "state": NUD_PERMANENT,
            "flags": NTF_SELF,
        }
        if dst is not None:
            spec["dst"] = str(dst)
        await self._call(
            f"delete fdb entry {mac} on link {index}", self.ipr.fdb("del", **spec), gone_ok=True
        )
