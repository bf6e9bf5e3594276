"""bridge: attach the container to a host bridge through a veth pair.

Drop-in for the reference plugin (plugins/main/bridge): same configuration keys and defaults
(bridge ``cni0``; ``isDefaultGateway`` implies ``isGateway``; hairpin and promiscuous mode are
mutually exclusive), IPAM delegated to ``ipam.type``, result interfaces ordered
[bridge, host veth, container veth] with IPs pointing at index 2.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netplugins import delegation, errors, ipconfig, nsenter, skel
from netplugins.result import normalize

if TYPE_CHECKING:
    from netplugins.netlink import Namespace

DEFAULT_BRIDGE = "cni0"


@dataclass
class BridgeConf:
    network: str
    bridge: str = DEFAULT_BRIDGE
    is_gateway: bool = False
    is_default_gateway: bool = False
    force_address: bool = False
    ip_masq: bool = False
    mtu: int = 0
    hairpin_mode: bool = False
    promisc_mode: bool = False
    vlan: int = 0
    ipam_type: str = ""
    mac: str = ""
    enable_dad: bool = False
    dns: dict[str, Any] = field(default_factory=dict)


def _bool(netconf: dict[str, Any], key: str) -> bool:
    value = netconf.get(key, False)
    if not isinstance(value, bool):
        raise errors.ConfigError(f"failed to load bridge config: {key!r} must be a boolean")
    return value


def load_conf(netconf: dict[str, Any]) -> BridgeConf:
    name = netconf.get("name")
    if not name:
        raise errors.ConfigError("failed to load bridge config: missing network 'name'")
    conf = BridgeConf(
        network=str(name),
        bridge=str(netconf.get("bridge") or DEFAULT_BRIDGE),
        is_gateway=_bool(netconf, "isGateway"),
        is_default_gateway=_bool(netconf, "isDefaultGateway"),
        force_address=_bool(netconf, "forceAddress"),
        ip_masq=_bool(netconf, "ipMasq"),
        mtu=int(netconf.get("mtu") or 0),
        hairpin_mode=_bool(netconf, "hairpinMode"),
        promisc_mode=_bool(netconf, "promiscMode"),
        vlan=int(netconf.get("vlan") or 0),
        ipam_type=str((netconf.get("ipam") or {}).get("type") or ""),
        mac=str((netconf.get("runtimeConfig") or {}).get("mac") or ""),
        enable_dad=_bool(netconf, "enabledad"),
        dns=dict(netconf.get("dns") or {}),
    )
    if len(conf.bridge) > 15:
        raise errors.ConfigError(f"bridge name {conf.bridge!r} is longer than 15 characters")
    if conf.is_default_gateway:
        conf.is_gateway = True
    if conf.hairpin_mode and conf.promisc_mode:
        raise errors.ConfigError("cannot set hairpin mode and promiscuous mode at the same time")
    if conf.vlan < 0 or conf.vlan > 4094:
        raise errors.ConfigError(f"invalid VLAN ID {conf.vlan} (must be between 0 and 4094)")
    return conf


def _host_veth_name() -> str:
    return "veth" + os.urandom(4).hex()


def _default_net(version: int) -> str:
    return "0.0.0.0/0" if version == 4 else "::/0"


def _add_default_routes(result: dict[str, Any]) -> None:
    """isDefaultGateway: a default route per IP family via that family's gateway."""
    routes = result.setdefault("routes", [])
    for ip in result.get("ips") or []:
        gw = ip.get("gateway")
        if not gw:
            continue
        dst = _default_net(ipaddress.ip_interface(ip["address"]).version)
        existing = [
            r for r in routes if ipaddress.ip_network(r["dst"]) == ipaddress.ip_network(dst)
        ]
        for route in existing:
            if route.get("gw") and route["gw"] != gw:
                raise errors.ConfigError(
                    "isDefaultGateway ineffective because IPAM sets default route via "
                    f"{route['gw']}"
                )
        if not any(r.get("gw") == gw for r in existing):
            routes.append({"dst": dst, "gw": gw})


def _ensure_gateway_address(host: Namespace, conf: BridgeConf, gw_cidr: str) -> None:
    """The bridge holds the gateway address (reference ensureAddr, incl. forceAddress)."""
    want = ipaddress.ip_interface(gw_cidr)
    if want.version == 4:
        # Fast path for every pod after the first: the bridge's primary address via ioctl.
        primary = host.primary_ipv4(conf.bridge)
        if primary is not None and ipaddress.ip_interface(primary) == want:
            return
    for existing_cidr in host.addresses(conf.bridge):
        existing = ipaddress.ip_interface(existing_cidr)
        if existing.version != want.version:
            continue
        if existing.ip == want.ip:
            return
        if want.version == 6 and existing.ip.is_link_local:
            continue
        # IPv4: one address per bridge; IPv6: several unless the subnets overlap.
        if want.version == 4 or existing.network.overlaps(want.network):
            if not conf.force_address:
                raise errors.NetPluginError(
                    f"{conf.bridge!r} already has an IP address different from {want}"
                )
            host.delete_address(conf.bridge, existing_cidr)
    host.ensure_address(conf.bridge, gw_cidr)


def cmd_add(args: skel.CmdArgs) -> dict[str, Any]:
    from netplugins import netlink

    conf = load_conf(args.netconf)
    with netlink.Namespace() as host, netlink.Namespace(args.netns) as cont:
        bridge = host.ensure_bridge(conf.bridge, conf.mtu, vlan_filtering=conf.vlan != 0)
        if conf.promisc_mode and not bridge.promisc:
            host.set_flag(conf.bridge, netlink.IFF_PROMISC, True)
        if cont.exists(args.ifname):
            raise errors.NetPluginError(
                f"container veth name {args.ifname!r} already exists in {args.netns}"
            )
        host_veth = _host_veth_name()
        host.create_veth(host_veth, args.ifname, cont, mtu=conf.mtu)
        try:
            if conf.mac:
                cont.set_mac(args.ifname, conf.mac)
            host.set_master(host_veth, conf.bridge, up=True)
            if conf.hairpin_mode:
                host.set_hairpin(host_veth, True)
            if conf.vlan:
                host.add_bridge_vlan(host_veth, conf.vlan)
            result: dict[str, Any] = {}
            if conf.ipam_type:
                ipam_result = delegation.delegate("ADD", conf.ipam_type, args.netconf, args)
                assert ipam_result is not None
                result = normalize(ipam_result)
            try:
                _finish_add(conf, args, host, cont, host_veth, result)
            except Exception:
                _undo_ipam_and_masq(conf, args)
                raise
        except Exception:
            # Best effort: the error the caller sees is the one that failed the ADD.
            with contextlib.suppress(errors.NetPluginError):
                cont.delete_link(args.ifname)
            raise
        return result


def _undo_ipam_and_masq(conf: BridgeConf, args: skel.CmdArgs) -> None:
    """Release what a failed ADD already took; never masks the ADD's own error."""
    with contextlib.suppress(errors.NetPluginError):
        if conf.ipam_type:
            delegation.delegate("DEL", conf.ipam_type, args.netconf, args)
    with contextlib.suppress(errors.NetPluginError):
        if conf.ip_masq:
            ipconfig.teardown_masquerade(conf.network, args.container_id)


def _finish_add(
    conf: BridgeConf,
    args: skel.CmdArgs,
    host: Namespace,
    cont: Namespace,
    host_veth: str,
    result: dict[str, Any],
) -> None:
    ips = result.get("ips") or []
    if conf.ipam_type and not ips:
        raise errors.NetPluginError("IPAM plugin returned missing IP config")
    for ip in ips:
        ip["interface"] = 2
    if conf.is_default_gateway:
        _add_default_routes(result)
    if ips:
        # The reference bridge, before configuring addresses: DAD off unless asked for (a
        # fresh veth cannot collide, and a tentative address would delay the pod's first
        # packets), and gratuitous ARP when the address changes.
        dad = (
            {"accept_dad": "0"} if not conf.enable_dad else {"enhanced_dad": "1", "accept_dad": "1"}
        )
        knobs = {nsenter.iface_sysctl("ipv6", args.ifname, k): v for k, v in dad.items()}
        knobs[nsenter.iface_sysctl("ipv4", args.ifname, "arp_notify")] = "1"
        nsenter.write_sysctls_best_effort(knobs, args.netns)
        ipconfig.configure_interface(cont, args.ifname, result)
    else:
        cont.set_up(args.ifname)  # layer 2 only: still up, as the reference leaves it
    if conf.is_gateway:
        for ip in ips:
            gw = ip.get("gateway")
            if not gw:
                continue
            prefix = ipaddress.ip_interface(ip["address"]).network.prefixlen
            _ensure_gateway_address(host, conf, f"{gw}/{prefix}")
            forward = "net.ipv4.ip_forward" if ":" not in gw else "net.ipv6.conf.all.forwarding"
            if nsenter.read_sysctl(forward) != "1":
                nsenter.write_sysctl(forward, "1")
    if conf.ip_masq and ips:
        ipconfig.setup_masquerade(conf.network, args.container_id, ips)
    # Re-read: the bridge's MAC follows its ports and may have changed (reference does too).
    result["interfaces"] = [
        {"name": conf.bridge, "mac": host.mac(conf.bridge)},
        *ipconfig.veth_interfaces(host, cont, host_veth, args),
    ]
    ipconfig.apply_config_dns(result, conf.dns)
    result.setdefault("routes", [])


def cmd_del(args: skel.CmdArgs) -> None:
    conf = load_conf(args.netconf)
    # IPAM first: the address must be released even when the namespace is gone
    # (SEED-NOTES "known pain": leaked addresses after reboots).
    if conf.ipam_type:
        delegation.delegate("DEL", conf.ipam_type, args.netconf, args)
    ipconfig.remove_attachment(args, conf.network, conf.ip_masq)


def cmd_check(args: skel.CmdArgs) -> None:
    from netplugins import netlink

    conf = load_conf(args.netconf)
    prev = ipconfig.prev_result_for_check(args.netconf, "bridge")
    prev = normalize(prev)
    if conf.ipam_type:
        delegation.delegate("CHECK", conf.ipam_type, args.netconf, args)
    with netlink.Namespace() as host, netlink.Namespace(args.netns) as cont:
        bridge = host.link(conf.bridge)
        if bridge is None or bridge.kind != "bridge":
            raise errors.CheckFailed(f"bridge {conf.bridge} is missing")
        inner = cont.link(args.ifname)
        if inner is None or inner.kind != "veth":
            raise errors.CheckFailed(f"veth {args.ifname} is missing in {args.netns}")
        peer = host.link_by_index(inner.peer_index)
        if peer is None or peer.master != bridge.index:
            raise errors.CheckFailed(f"the host end of {args.ifname} is not on {conf.bridge}")
        ipconfig.check_mac(cont, prev, args.ifname)
        ipconfig.check_addresses(cont.addresses(args.ifname), prev, args.ifname)
        ipconfig.check_routes(cont, prev)


PLUGIN = delegation.ipam_backed_spec("bridge", add=cmd_add, delete=cmd_del, check=cmd_check)


def main() -> None:
    skel.main(PLUGIN)
