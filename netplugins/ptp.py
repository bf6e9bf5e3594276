"""ptp: a veth pair with a point-to-point route, no bridge (reference plugins/main/ptp).

The container keeps the IPAM address and mask, but its subnet route is replaced by a /32
(/128) link route to the gateway plus a subnet route via that gateway, so every packet goes to
the host end. The host end holds the gateway address as /32 (/128) and a host route to the
container address. Result interfaces are [host veth, container veth], IPs point at index 1.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

from netplugins import delegation, errors, ipconfig, nsenter, skel
from netplugins.result import normalize


@dataclass
class PtpConf:
    network: str
    ip_masq: bool = False
    mtu: int = 0
    ipam_type: str = ""
    dns: dict[str, Any] = field(default_factory=dict)


def load_conf(netconf: dict[str, Any]) -> PtpConf:
    name = netconf.get("name")
    if not name:
        raise errors.ConfigError("failed to load ptp config: missing network 'name'")
    ipam_type = str((netconf.get("ipam") or {}).get("type") or "")
    if not ipam_type:
        raise errors.ConfigError("failed to load ptp config: 'ipam' with a 'type' is required")
    return PtpConf(
        network=str(name),
        ip_masq=bool(netconf.get("ipMasq", False)),
        mtu=int(netconf.get("mtu") or 0),
        ipam_type=ipam_type,
        dns=dict(netconf.get("dns") or {}),
    )


def cmd_add(args: skel.CmdArgs) -> dict[str, Any]:
    from netplugins import netlink

    conf = load_conf(args.netconf)
    ipam = delegation.delegate("ADD", conf.ipam_type, args.netconf, args)
    assert ipam is not None
    result = normalize(ipam)
    try:
        if not result.get("ips"):
            raise errors.NetPluginError("IPAM plugin returned missing IP config")
        with netlink.Namespace() as host, netlink.Namespace(args.netns) as cont:
            if cont.exists(args.ifname):
                raise errors.NetPluginError(
                    f"container veth name {args.ifname!r} already exists in {args.netns}"
                )
            host_veth = "veth" + os.urandom(4).hex()
            host.create_veth(host_veth, args.ifname, cont, mtu=conf.mtu)
            try:
                _configure(conf, args, host, cont, host_veth, result)
            except Exception:
                with contextlib.suppress(errors.NetPluginError):
                    cont.delete_link(args.ifname)
                raise
    except Exception:
        # Best effort: the error the caller sees is the one that failed the ADD.
        with contextlib.suppress(errors.NetPluginError):
            delegation.delegate("DEL", conf.ipam_type, args.netconf, args)
        with contextlib.suppress(errors.NetPluginError):
            if conf.ip_masq:
                ipconfig.teardown_masquerade(conf.network, args.container_id)
        raise
    return result


def _configure(
    conf: PtpConf,
    args: skel.CmdArgs,
    host: Any,
    cont: Any,
    host_veth: str,
    result: dict[str, Any],
) -> None:
    from netplugins import netlink

    for ip in result["ips"]:
        ip["interface"] = 1
    host.set_up(host_veth)  # before the addresses: IPv6 DAD needs a carrier
    ipconfig.configure_interface(cont, args.ifname, result)
    for ip in result["ips"]:
        iface = ipaddress.ip_interface(ip["address"])
        gw = ip.get("gateway")
        if not gw:
            raise errors.NetPluginError(f"IPAM gave no gateway for {iface}: ptp needs one")
        bits = iface.max_prefixlen
        cont.delete_route(str(iface.network), args.ifname)
        cont.ensure_route(f"{gw}/{bits}", None, args.ifname, netlink.SCOPE_LINK, str(iface.ip))
        cont.ensure_route(str(iface.network), gw, args.ifname, None, str(iface.ip))
    for ip in result["ips"]:
        iface = ipaddress.ip_interface(ip["address"])
        bits = iface.max_prefixlen
        host.ensure_address(host_veth, f"{ip['gateway']}/{bits}")
        scope = netlink.SCOPE_HOST if iface.version == 4 else None
        host.ensure_route(f"{iface.ip}/{bits}", None, host_veth, scope)
        forward = "net.ipv4.ip_forward" if iface.version == 4 else "net.ipv6.conf.all.forwarding"
        if nsenter.read_sysctl(forward) != "1":
            nsenter.write_sysctl(forward, "1")
    if conf.ip_masq:
        ipconfig.setup_masquerade(conf.network, args.container_id, result["ips"])
    result["interfaces"] = ipconfig.veth_interfaces(host, cont, host_veth, args)
    ipconfig.apply_config_dns(result, conf.dns)
    result.setdefault("routes", [])


def cmd_del(args: skel.CmdArgs) -> None:
    conf = load_conf(args.netconf)
    delegation.delegate("DEL", conf.ipam_type, args.netconf, args)
    ipconfig.remove_attachment(args, conf.network, conf.ip_masq)


def cmd_check(args: skel.CmdArgs) -> None:
    from netplugins import netlink

    conf = load_conf(args.netconf)
    prev = ipconfig.prev_result_for_check(args.netconf, "ptp")
    delegation.delegate("CHECK", conf.ipam_type, args.netconf, args)
    with netlink.Namespace(args.netns) as cont:
        inner = cont.link(args.ifname)
        if inner is None or inner.kind != "veth":
            raise errors.CheckFailed(f"veth {args.ifname} is missing in {args.netns}")
        prev = normalize(prev)
        ipconfig.check_mac(cont, prev, args.ifname)
        ipconfig.check_addresses(cont.addresses(args.ifname), prev, args.ifname)
        ipconfig.check_routes(cont, prev)


PLUGIN = delegation.ipam_backed_spec("ptp", add=cmd_add, delete=cmd_del, check=cmd_check)


def main() -> None:
    skel.main(PLUGIN)
