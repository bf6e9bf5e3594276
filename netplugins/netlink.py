"""The only module of netplugins that imports pyroute2.

Everything here is idempotent where the name says ``ensure_``: "already exists" (EEXIST) is
success, "not there" (ENODEV/ESRCH/EADDRNOTAVAIL) on delete is success, so ADD can be retried
and DEL repeated (SPEC "DEL": must succeed when resources are already gone).

A plugin is a short-lived separate process (or a forked child of the warm worker), so it may
switch its own network namespace: :func:`entered` does ``setns(2)`` and always returns to the
namespace it came from. A netlink socket stays bound to the namespace it was created in, which
is how :class:`Namespace` talks to a container namespace while the process sits in the host's.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netplugins import ifreq
from netplugins.errors import NetlinkFailure
from netplugins.nsenter import entered

# The kernel's answers that mean "already there" / "already gone".
_EXISTS = (errno.EEXIST,)
_GONE = (errno.ENODEV, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENXIO)

AF_INET = 2
AF_INET6 = 10
# Routes we add are "boot" routes, like those the reference plugins add through netlink.
RTPROT_BOOT = 3
RT_TABLE_MAIN = 254
SCOPE_UNIVERSE = 0
SCOPE_LINK = 253
SCOPE_HOST = 254
SCOPE_NOWHERE = 255
ETH_P_ALL = 0x0003
IFA_F_TENTATIVE = 0x40
IFF_UP = 0x1
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    kind: str
    mac: str
    mtu: int
    up: bool
    promisc: bool
    allmulti: bool
    master: int
    peer_index: int
    alias: str = ""


def _link_info(msg: Any) -> LinkInfo:
    linkinfo = msg.get("IFLA_LINKINFO")
    kind = linkinfo.get("IFLA_INFO_KIND") if linkinfo is not None else None
    flags = int(msg["flags"])
    return LinkInfo(
        index=int(msg["index"]),
        name=str(msg.get("IFLA_IFNAME")),
        kind=str(kind or ""),
        mac=str(msg.get("IFLA_ADDRESS") or ""),
        mtu=int(msg.get("IFLA_MTU") or 0),
        up=bool(flags & IFF_UP),
        promisc=bool(flags & IFF_PROMISC),
        allmulti=bool(flags & IFF_ALLMULTI),
        master=int(msg.get("IFLA_MASTER") or 0),
        peer_index=int(msg.get("IFLA_LINK") or 0),
        alias=str(msg.get("IFLA_IFALIAS") or ""),
    )


class Namespace:
    """A netlink socket bound to one network namespace (the caller's own when path is "")."""

    def __init__(self, netns_path: str = "") -> None:
        self.path = netns_path
        # name -> ifindex: an index is stable while the link lives here, and each RTM_GETLINK
        # costs ~1 ms in pyroute2, so a plugin looks each name up once.
        self._indexes: dict[str, int] = {}
        self._shared = not netns_path
        if netns_path:
            with entered(netns_path):
                self._ipr = IPRoute()
                # For ifreq ioctls (index, MAC, MTU): microseconds where decoding a full
                # RTM_NEWLINK in pyroute2 costs a millisecond or two.
                self._ioctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        else:
            self._ipr, self._ioctl = _host_socket()

    def close(self) -> None:
        if not self._shared:  # the host sockets live as long as the process
            self._ipr.close()
            self._ioctl.close()

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, what: str, exc: NetlinkError) -> NetlinkFailure:
        where = f" in {self.path}" if self.path else ""
        return NetlinkFailure(f"failed to {what}{where}", f"{os.strerror(exc.code)} ({exc.code})")

    # -- links ---------------------------------------------------------------------------
    def link(self, name: str) -> LinkInfo | None:
        try:
            # A targeted RTM_GETLINK: get_links(ifname=) dumps every link and filters.
            msgs = self._ipr.link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code in _GONE:
                self._indexes.pop(name, None)
                return None
            raise self._fail(f"look up link {name}", exc) from exc
        if not msgs:
            return None
        info = _link_info(msgs[0])
        self._indexes[name] = info.index
        return info

    def index(self, name: str) -> int:
        """The ifindex of ``name`` (cached); NetlinkFailure when there is no such link."""
        cached = self._indexes.get(name)
        if cached is not None:
            return cached
        found = ifreq.get_index(name, self._ioctl)
        if found is None:
            where = f" in {self.path}" if self.path else ""
            raise NetlinkFailure(f"failed to find link {name}{where}", "no such device")
        self._indexes[name] = found
        return found

    def exists(self, name: str) -> bool:
        return ifreq.get_index(name, self._ioctl) is not None

    def mac(self, name: str) -> str:
        return ifreq.get_mac(name, self._ioctl)

    def mtu(self, name: str) -> int:
        return ifreq.get_mtu(name, self._ioctl)

    def primary_ipv4(self, name: str) -> str | None:
        return ifreq.ipv4_address(name, self._ioctl)

    def link_by_index(self, index: int) -> LinkInfo | None:
        try:
            msgs = self._ipr.get_links(index)
        except NetlinkError as exc:
            if exc.code in _GONE:
                return None
            raise self._fail(f"look up link #{index}", exc) from exc
        return _link_info(msgs[0]) if msgs else None

    def links(self) -> list[LinkInfo]:
        return [_link_info(m) for m in self._ipr.get_links()]

    def require_link(self, name: str) -> LinkInfo:
        info = self.link(name)
        if info is None:
            where = f" in {self.path}" if self.path else ""
            raise NetlinkFailure(f"failed to find link {name}{where}", "no such device")
        return info

    def ensure_bridge(self, name: str, mtu: int = 0, vlan_filtering: bool = False) -> LinkInfo:
        """Create bridge ``name`` if missing (EEXIST from a racing ADD is fine), bring it up."""
        info = self.link(name)
        if info is None:
            attrs: dict[str, Any] = {"ifname": name, "kind": "bridge"}
            if mtu:
                attrs["mtu"] = mtu
            if vlan_filtering:
                attrs["br_vlan_filtering"] = 1
            try:
                self._ipr.link("add", **attrs)
            except NetlinkError as exc:
                if exc.code not in _EXISTS:
                    raise self._fail(f"create bridge {name}", exc) from exc
            info = self.require_link(name)
        if info.kind != "bridge":
            raise NetlinkFailure(f"failed to use bridge {name}", f"link is a {info.kind!r}")
        if vlan_filtering:
            self._set(
                info.index, f"enable vlan filtering on {name}", kind="bridge", br_vlan_filtering=1
            )
        if info.up:
            return info
        self.set_up(name)
        return self.require_link(name)

    def _set(self, index: int, what: str, **attrs: Any) -> None:
        try:
            self._ipr.link("set", index=index, **attrs)
        except NetlinkError as exc:
            raise self._fail(what, exc) from exc

    def set_up(self, name: str) -> None:
        self._set(self.index(name), f"set link {name} up", state="up")

    def set_mtu(self, name: str, mtu: int) -> None:
        self._set(self.index(name), f"set mtu {mtu} on {name}", mtu=mtu)

    def set_mac(self, name: str, mac: str) -> None:
        self._set(self.index(name), f"set mac {mac} on {name}", address=mac)

    def set_flag(self, name: str, flag: int, on: bool) -> None:
        try:
            self._ipr.link("set", index=self.index(name), flags=flag if on else 0, change=flag)
        except NetlinkError as exc:
            raise self._fail(f"set flag {flag:#x}={on} on {name}", exc) from exc

    def set_master(self, name: str, master: str, up: bool = False) -> None:
        """Enslave ``name`` to ``master`` (and bring it up in the same request)."""
        attrs: dict[str, Any] = {"master": self.index(master)}
        if up:
            attrs["state"] = "up"
        self._set(self.index(name), f"attach {name} to {master}", **attrs)

    def set_hairpin(self, name: str, on: bool) -> None:
        """IFLA_BRPORT_MODE is the bridge port's hairpin ("reflective relay") flag."""
        try:
            self._ipr.brport("set", index=self.index(name), mode=int(on))
        except NetlinkError as exc:
            raise self._fail(f"set hairpin mode on {name}", exc) from exc

    def add_bridge_vlan(self, name: str, vid: int) -> None:
        """Port ``name`` carries ``vid`` as PVID, untagged (what the reference bridge sets)."""
        index = self.index(name)
        try:
            self._ipr.vlan_filter(
                "add", index=index, vlan_info={"vid": vid, "flags": ["pvid", "untagged"]}
            )
        except NetlinkError as exc:
            if exc.code not in _EXISTS:
                raise self._fail(f"add vlan {vid} to port {name}", exc) from exc

    def create_veth(
        self, name: str, peer_name: str, peer_ns: Namespace, mtu: int = 0, mac: str = ""
    ) -> None:
        """Create veth ``name`` here with its peer ``peer_name`` directly in ``peer_ns``."""
        peer_fd = os.open(peer_ns.path or "/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            peer: dict[str, Any] = {"ifname": peer_name, "net_ns_fd": peer_fd}
            attrs: dict[str, Any] = {"ifname": name, "kind": "veth", "peer": peer}
            if mtu:
                attrs["mtu"] = mtu
                peer["mtu"] = mtu
            if mac:
                attrs["address"] = mac
            self._ipr.link("add", **attrs)
        except NetlinkError as exc:
            raise self._fail(f"create veth {name}/{peer_name}", exc) from exc
        finally:
            os.close(peer_fd)

    def delete_link(self, name: str) -> bool:
        """Delete ``name``; True when it existed. Deleting one veth end removes both."""
        index = self._indexes.pop(name, None) or ifreq.get_index(name, self._ioctl)
        if index is None:
            return False
        try:
            self._ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code in _GONE:
                return False
            raise self._fail(f"delete link {name}", exc) from exc
        return True

    # -- traffic control (bandwidth) -------------------------------------------------------
    def ensure_ifb(self, name: str, mtu: int, alias: str = "") -> None:
        """An ifb device (where redirected ingress gets shaped), up, with ``mtu`` and, when
        given, ``alias`` (ifalias: who owns the device, for GC)."""
        if self.link(name) is None:
            try:
                self._ipr.link("add", ifname=name, kind="ifb", mtu=mtu)
            except NetlinkError as exc:
                if exc.code not in _EXISTS:
                    raise self._fail(f"create ifb device {name}", exc) from exc
        if alias:
            self._set(self.index(name), f"set alias of {name}", ifalias=alias)
        self.set_up(name)

    def set_tbf(self, dev: str, rate_bits: int, burst_bytes: int, latency_ms: int) -> None:
        """Root token bucket filter on ``dev`` (replaces an existing root qdisc)."""
        try:
            self._ipr.tc(
                "replace",
                "tbf",
                index=self.index(dev),
                handle=0x10000,
                rate=f"{rate_bits}bit",
                burst=burst_bytes,
                latency=f"{latency_ms}ms",
            )
        except NetlinkError as exc:
            raise self._fail(f"add tbf qdisc to {dev}", exc) from exc

    def redirect_ingress(self, dev: str, target: str) -> None:
        """Ingress qdisc on ``dev`` with a match-all u32 filter that redirects to ``target``."""
        index = self.index(dev)
        try:
            self._ipr.tc("add", "ingress", index=index, handle=0xFFFF0000)
        except NetlinkError as exc:
            if exc.code not in _EXISTS:
                raise self._fail(f"add ingress qdisc to {dev}", exc) from exc
        try:
            self._ipr.tc(
                "add-filter",
                "u32",
                index=index,
                parent=0xFFFF0000,
                prio=1,
                protocol=ETH_P_ALL,
                target=0x10001,
                keys=["0x0/0x0+0"],
                action=[
                    {
                        "kind": "mirred",
                        "direction": "egress",
                        "action": "redirect",
                        "ifindex": self.index(target),
                    }
                ],
            )
        except NetlinkError as exc:
            raise self._fail(f"redirect ingress of {dev} to {target}", exc) from exc

    def qdisc_kinds(self, dev: str) -> list[str]:
        try:
            msgs = self._ipr.get_qdiscs(index=self.index(dev))
        except NetlinkError as exc:
            raise self._fail(f"list qdiscs of {dev}", exc) from exc
        return [str(m.get("TCA_KIND")) for m in msgs]

    # -- addresses -----------------------------------------------------------------------
    def addresses(self, name: str) -> list[str]:
        index = self._indexes.get(name)
        if index is None:
            info = self.link(name)
            if info is None:
                return []
            index = info.index
        out = []
        for msg in self._ipr.get_addr(index=index):
            addr = msg.get("IFA_ADDRESS") if msg["family"] == AF_INET6 else msg.get("IFA_LOCAL")
            addr = addr or msg.get("IFA_ADDRESS")
            out.append(f"{addr}/{msg['prefixlen']}")
        return out

    def settle_addresses(self, name: str, timeout: float = 10.0) -> None:
        """Wait until no IPv6 address of ``name`` is tentative (DAD done), like the reference's
        SettleAddresses: routes with such a source address would be refused (EINVAL)."""
        index = self.index(name)
        deadline = time.monotonic() + timeout
        while True:
            tentative = [
                m
                for m in self._ipr.get_addr(index=index, family=AF_INET6)
                if (int(m["flags"]) | int(m.get("IFA_FLAGS") or 0)) & IFA_F_TENTATIVE
                and not str(m.get("IFA_ADDRESS", "")).startswith("fe80")
            ]
            if not tentative:
                return
            if time.monotonic() > deadline:
                raise NetlinkFailure(f"failed to settle addresses of {name}", "DAD still running")
            time.sleep(0.05)

    def ensure_address(self, name: str, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        index = self.index(name)
        attrs: dict[str, Any] = {
            "index": index,
            "address": str(iface.ip),
            "prefixlen": iface.network.prefixlen,
        }
        if iface.version == 4:
            attrs["broadcast"] = str(iface.network.broadcast_address)
        try:
            self._ipr.addr("add", **attrs)
        except NetlinkError as exc:
            if exc.code not in _EXISTS:
                raise self._fail(f"add address {cidr} to {name}", exc) from exc

    def delete_address(self, name: str, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        info = self.link(name)
        if info is None:
            return
        try:
            self._ipr.addr(
                "del", index=info.index, address=str(iface.ip), prefixlen=iface.network.prefixlen
            )
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise self._fail(f"delete address {cidr} from {name}", exc) from exc

    # -- routes --------------------------------------------------------------------------
    def ensure_route(
        self,
        dst: str,
        gw: str | None,
        dev: str,
        scope: int | None = None,
        src: str | None = None,
    ) -> None:
        net = ipaddress.ip_network(dst, strict=False)
        attrs: dict[str, Any] = {
            "dst": str(net),
            "oif": self.index(dev),
            "proto": RTPROT_BOOT,
            "family": AF_INET if net.version == 4 else AF_INET6,
        }
        if gw:
            attrs["gateway"] = gw
        if scope is not None:
            attrs["scope"] = scope
        if src:
            attrs["prefsrc"] = src
        try:
            self._ipr.route("add", **attrs)
        except NetlinkError as exc:
            if exc.code not in _EXISTS:
                raise self._fail(f"add route {dst} via {gw} dev {dev}", exc) from exc

    def routes(self, version: int) -> list[tuple[str, str | None]]:
        """The main table's routes of one IP family as (destination network, gateway or None)."""
        family = AF_INET if version == 4 else AF_INET6
        try:
            msgs = self._ipr.get_routes(family=family, table=RT_TABLE_MAIN)
        except NetlinkError as exc:
            raise self._fail(f"list IPv{version} routes", exc) from exc
        out: list[tuple[str, str | None]] = []
        for msg in msgs:
            dst = msg.get("RTA_DST") or ("0.0.0.0" if version == 4 else "::")
            gw = msg.get("RTA_GATEWAY")
            out.append((f"{dst}/{msg['dst_len']}", str(gw) if gw else None))
        return out

    def delete_route(self, dst: str, dev: str) -> None:
        """Delete the route to ``dst`` through ``dev`` (e.g. the kernel's subnet route)."""
        net = ipaddress.ip_network(dst, strict=False)
        try:
            self._ipr.route(
                "del",
                dst=str(net),
                oif=self.index(dev),
                family=AF_INET if net.version == 4 else AF_INET6,
                scope=SCOPE_NOWHERE,  # match any scope (the kernel's subnet route is "link")
            )
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise self._fail(f"delete route {dst} dev {dev}", exc) from exc


def prewarm() -> None:
    """Build what pyroute2 builds on first use, once, in the warm worker's zygote before it forks.

    pyroute2 compiles each message class's attribute tables the first time it encodes or
    decodes one; done in every forked child, that was ~2 ms of CPU per plugin call. Done here,
    the children inherit the tables. The socket is private and closed again, so no child
    inherits it (a child opens its own when a command first needs one).
    """
    ipr = IPRoute()
    try:
        lo = ipr.link("get", ifname="lo")
        ipr.get_addr(index=lo[0]["index"])
        ipr.get_routes(family=AF_INET, table=RT_TABLE_MAIN)
        ipr.get_routes(family=AF_INET6, table=RT_TABLE_MAIN)
    finally:
        ipr.close()


_host: tuple[int, Any, socket.socket] | None = None


def _host_socket() -> tuple[Any, socket.socket]:
    """The netlink and ioctl sockets of the namespace the process started in, opened once.

    Checked against the pid: a forked child must not share its parent's socket (their
    replies would interleave), so it opens its own, once.
    """
    global _host
    if _host is None or _host[0] != os.getpid():
        _host = (os.getpid(), IPRoute(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    return _host[1], _host[2]
