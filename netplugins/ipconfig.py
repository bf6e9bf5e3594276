"""Container-side IP configuration and masquerading shared by bridge and ptp.

``configure_interface`` is the reference's ``ipam.ConfigureIface``: the result's addresses on the
interface, the interface up, then the result's routes (a route without ``gw`` goes via the
gateway of the same family). The masquerade chain is ``ip.SetupIPMasq``'s layout.
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import TYPE_CHECKING, Any

from netplugins import errors, nsenter
from netplugins.iptables import IPTables, chain_name, comment

if TYPE_CHECKING:
    from netplugins.netlink import Namespace


def configure_interface(ns: Namespace, ifname: str, result: dict[str, Any]) -> None:
    """Addresses, then routes (gateway defaults to the IP's of the same family), then up."""

    ips = result.get("ips") or []
    if any(ipaddress.ip_interface(ip["address"]).version == 6 for ip in ips):
        # The reference disables DAD by default: a fresh veth cannot collide and waiting for
        # DAD would delay the pod's first packets.
        for key in ("accept_dad", "disable_ipv6"):
            value = "0"
            with contextlib.suppress(errors.NetPluginError):
                nsenter.write_sysctl(f"net.ipv6.conf.{ifname}.{key}", value, ns.path)
    for ip in ips:
        ns.ensure_address(ifname, ip["address"])
    ns.set_up(ifname)
    for route in result.get("routes") or []:
        version = ipaddress.ip_network(route["dst"], strict=False).version
        gw = route.get("gw")
        if not gw:
            gw = next(
                (
                    ip.get("gateway")
                    for ip in ips
                    if ipaddress.ip_interface(ip["address"]).version == version
                ),
                None,
            )
        ns.ensure_route(route["dst"], gw, ifname)


def setup_masquerade(network: str, container_id: str, ips: list[dict[str, Any]]) -> None:
    """Reference ip.SetupIPMasq: a CNI-<hash> chain per container, entered by source IP."""
    chain = chain_name(network, container_id)
    note = comment(network, container_id)
    for ip in ips:
        iface = ipaddress.ip_interface(ip["address"])
        ipt = IPTables(iface.version)
        multicast = "224.0.0.0/4" if iface.version == 4 else "ff00::/8"
        ipt.ensure_chain("nat", chain)
        ipt.append_unique(
            "nat",
            chain,
            ["-d", str(iface.network), "-m", "comment", "--comment", note, "-j", "ACCEPT"],
        )
        ipt.append_unique(
            "nat",
            chain,
            ["!", "-d", multicast, "-m", "comment", "--comment", note, "-j", "MASQUERADE"],
        )
        ipt.append_unique(
            "nat",
            "POSTROUTING",
            ["-s", str(iface.ip), "-m", "comment", "--comment", note, "-j", chain],
        )


def teardown_masquerade(network: str, container_id: str) -> None:
    """Remove exactly this container's POSTROUTING jumps (matched by comment) and chain."""
    chain = chain_name(network, container_id)
    note = comment(network, container_id)
    for version in (4, 6):
        ipt = IPTables(version)
        ipt.delete_rules_with_comment("nat", "POSTROUTING", note)
        ipt.delete_chain("nat", chain)
