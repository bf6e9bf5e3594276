"""Container-side IP configuration and masquerading shared by bridge and ptp.

``configure_interface`` is the reference's ``ipam.ConfigureIface``: the result's addresses on the
interface, the interface up, then the result's routes (a route without ``gw`` goes via the
gateway of the same family). The masquerade chain is ``ip.SetupIPMasq``'s layout.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from netplugins import errors, nsenter
from netplugins.iptables import (
    IPTables,
    Snapshot,
    chain_name,
    comment,
    format_rule,
    ids_in_comments,
    quote_arg,
)

if TYPE_CHECKING:
    from netplugins.netlink import Namespace
    from netplugins.skel import CmdArgs


def configure_interface(ns: Namespace, ifname: str, result: dict[str, Any]) -> None:
    """Addresses, then routes (gateway defaults to the IP's of the same family), then up."""

    ips = result.get("ips") or []
    if any(ipaddress.ip_interface(ip["address"]).version == 6 for ip in ips):
        # An IPv6 address needs IPv6 enabled on the interface (and lo), as ConfigureIface does.
        nsenter.write_sysctls_best_effort(
            {nsenter.iface_sysctl("ipv6", i, "disable_ipv6"): "0" for i in ("lo", ifname)}, ns.path
        )
    for ip in ips:
        ns.ensure_address(ifname, ip["address"])
    ns.set_up(ifname)
    if any(ip.get("gateway") and ":" in str(ip["gateway"]) for ip in ips):
        ns.settle_addresses(ifname)  # no-op when the caller turned DAD off
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


def apply_config_dns(result: dict[str, Any], dns: dict[str, Any]) -> None:
    """The config's ``dns`` replaces the IPAM result's only when it sets something.

    As the reference bridge and ptp (``dnsConfSet``): an absent or empty ``dns`` keeps what
    IPAM returned (host-local's ``resolvConf``), instead of wiping it. A list that is present,
    even empty, counts as set (Go's non-nil slice); an empty domain does not.
    """
    lists_set = any(dns.get(key) is not None for key in ("nameservers", "search", "options"))
    if lists_set or dns.get("domain"):
        result["dns"] = dns


def veth_interfaces(
    host: Namespace, cont: Namespace, host_veth: str, args: CmdArgs
) -> list[dict[str, Any]]:
    """A result's entries for the veth pair: host end, then the container end in its sandbox."""
    return [
        {"name": host_veth, "mac": host.mac(host_veth)},
        {"name": args.ifname, "mac": cont.mac(args.ifname), "sandbox": args.netns},
    ]


def check_addresses(present: Iterable[str], prev: dict[str, Any], ifname: str) -> None:
    """CHECK: every address of the cached result ``prev`` (1.x shape) is among ``present``.

    ``present`` is what ``ifname`` holds now ("addr/prefix" strings); compared as interfaces so
    that notation differences (IPv6 zero compression) do not count.
    """
    have = {ipaddress.ip_interface(a) for a in present}
    for ip in prev.get("ips") or []:
        if ipaddress.ip_interface(ip["address"]) not in have:
            raise errors.CheckFailed(f"address {ip['address']} missing on {ifname}")


def check_routes(ns: Namespace, prev: dict[str, Any]) -> None:
    """CHECK: every route of the cached result ``prev`` (1.x shape) is in ``ns``'s main table.

    As the reference's ValidateExpectedRoute: same destination, and same gateway when the
    result names one. A route without ``gw`` was installed via the family's gateway
    (:func:`configure_interface`), so there any gateway will do.
    """
    tables: dict[int, set[tuple[Any, Any]]] = {}
    for route in prev.get("routes") or []:
        dst = ipaddress.ip_network(route["dst"], strict=False)
        if dst.version not in tables:
            tables[dst.version] = {
                (ipaddress.ip_network(d, strict=False), ipaddress.ip_address(g) if g else None)
                for d, g in ns.routes(dst.version)
            }
        present = tables[dst.version]
        gw = route.get("gw")
        if gw:
            found = (dst, ipaddress.ip_address(gw)) in present
        else:
            found = any(d == dst for d, _ in present)
        if not found:
            raise errors.CheckFailed(f"route to {dst} via {gw or '-'} missing in {ns.path}")


def check_mac(ns: Namespace, prev: dict[str, Any], ifname: str) -> None:
    """CHECK: the container interface still has the MAC the cached result recorded (if any)."""
    for iface in prev.get("interfaces") or []:
        if iface.get("name") != ifname or not iface.get("sandbox") or not iface.get("mac"):
            continue
        have = ns.mac(ifname)
        if have.lower() != str(iface["mac"]).lower():
            raise errors.CheckFailed(
                f"interface {ifname} has MAC {have}, the cached result says {iface['mac']}"
            )


def prev_result_for_check(netconf: dict[str, Any], plugin: str) -> dict[str, Any]:
    """CHECK's cached result as given (SPEC "CHECK": the runtime must pass ``prevResult``)."""
    prev = netconf.get("prevResult")
    if not isinstance(prev, dict):
        raise errors.CheckFailed(f"{plugin}: CHECK requires a prevResult")
    return prev


def remove_attachment(args: CmdArgs, network: str, ip_masq: bool) -> None:
    """DEL after IPAM: the container's veth end (the host end goes with it), then masquerading.

    A namespace that is already gone took the pair with it: nothing to do there (SPEC "DEL"
    must succeed when parts are missing).
    """
    from netplugins import netlink  # as in the commands: pyroute2 only once a command needs it

    if args.netns and nsenter.netns_exists(args.netns):
        try:
            with netlink.Namespace(args.netns) as cont:
                cont.delete_link(args.ifname)
        except nsenter.NamespaceGone:
            pass
    if ip_masq:
        teardown_masquerade(network, args.container_id)


def setup_masquerade(network: str, container_id: str, ips: list[dict[str, Any]]) -> None:
    """Reference ip.SetupIPMasq: a CNI-<hash> chain per container, entered by source IP.

    Written per family with one iptables-save and one iptables-restore (each iptables exec
    costs milliseconds): whatever this container had is replaced as a whole, which also makes
    a repeated ADD idempotent.
    """
    chain = chain_name(network, container_id)
    note = comment(network, container_id)
    for version in (4, 6):
        ifaces = [
            i for i in (ipaddress.ip_interface(ip["address"]) for ip in ips) if i.version == version
        ]
        if not ifaces:
            continue
        ipt = IPTables(version)
        lines = _teardown_lines(ipt.save("nat"), chain, note)
        lines.append(f"-N {chain}")
        multicast = "224.0.0.0/4" if version == 4 else "ff00::/8"
        for net in dict.fromkeys(str(i.network) for i in ifaces):
            lines.append(
                format_rule(chain, ["-d", net, "-m", "comment", "--comment", note, "-j", "ACCEPT"])
            )
        lines.append(
            format_rule(
                chain,
                ["!", "-d", multicast, "-m", "comment", "--comment", note, "-j", "MASQUERADE"],
            )
        )
        for iface in ifaces:
            lines.append(
                format_rule(
                    "POSTROUTING",
                    ["-s", str(iface.ip), "-m", "comment", "--comment", note, "-j", chain],
                )
            )
        ipt.restore("nat", lines)


def teardown_masquerade(network: str, container_id: str) -> None:
    """Remove exactly this container's POSTROUTING jumps (matched by comment) and chain."""
    chain = chain_name(network, container_id)
    note = comment(network, container_id)
    for version in (4, 6):
        ipt = IPTables(version)
        ipt.restore("nat", _teardown_lines(ipt.save("nat"), chain, note))


def gc_masquerade(network: str, valid_ids: set[str]) -> None:
    """SPEC 1.1 GC: drop this network's masquerade rules of containers not in ``valid_ids``.

    The chain name is a hash, so a leftover is found by the comment of its POSTROUTING jump,
    ``name: "<net>" id: "<id>"`` (exact network name: other networks' rules are never read
    as ours). Each stale id loses its jumps and its chain, as in :func:`teardown_masquerade`.
    """
    for version in (4, 6):
        ipt = IPTables(version)
        state = ipt.save("nat")
        stale = ids_in_comments(state.rules_in("POSTROUTING"), network) - valid_ids
        lines: list[str] = []
        for container_id in sorted(stale):
            chain = chain_name(network, container_id)
            lines += _teardown_lines(state, chain, comment(network, container_id))
        ipt.restore("nat", lines)


def _teardown_lines(state: Snapshot, chain: str, note: str) -> list[str]:
    quoted = quote_arg(note)
    lines = [
        "-D" + line[2:]
        for line in state.rules_in("POSTROUTING")
        if quoted in line and line.endswith(f"-j {chain}")
    ]
    if chain in state.chains:
        lines += [f"-F {chain}", f"-X {chain}"]
    return lines
