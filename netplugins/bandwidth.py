"""bandwidth: rate limits with token bucket filters (reference meta/bandwidth).

Rates are bits per second and bursts bits, from the config or the ``bandwidth`` capability
(``runtimeConfig.bandwidth`` wins). Traffic *into* the pod leaves the host through the host end
of its veth, so ingress is a TBF on that device. Traffic *from* the pod arrives on the host
end; Linux can only shape what it sends, so it is redirected to an ifb device
``bwp<sha512(network + container id)[:12]>`` with a TBF of its own. Latency is 25 ms, as in the
reference. DEL removes the ifb device (the veth's qdiscs go with the veth), and so does GC for
attachments no longer valid (the device's ifalias names its network and container).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netplugins import errors, skel
from netplugins.iptables import comment
from netplugins.result import normalize

if TYPE_CHECKING:
    from netplugins.netlink import Namespace

LATENCY_MS = 25
IFB_PREFIX = "bwp"
MAX_IFNAME = 15
MAX_BURST_BYTES = 2**32 - 1


@dataclass
class BandwidthConf:
    network: str
    ingress_rate: int = 0
    ingress_burst: int = 0
    egress_rate: int = 0
    egress_burst: int = 0
    prev_result: dict[str, Any] | None = None


def _int(raw: dict[str, Any], key: str) -> int:
    try:
        value = int(raw.get(key) or 0)
    except (TypeError, ValueError) as exc:
        raise errors.ConfigError(f"failed to parse {key}: {raw.get(key)!r}") from exc
    if value < 0:
        raise errors.ConfigError(f"{key} must not be negative")
    return value


def _validate(rate: int, burst: int, direction: str) -> None:
    if rate and not burst:
        raise errors.ConfigError(f"if {direction} rate is set, burst must also be set")
    if burst and not rate:
        raise errors.ConfigError(f"if {direction} burst is set, rate must also be set")
    if burst // 8 >= MAX_BURST_BYTES:
        raise errors.ConfigError(f"{direction} burst cannot be more than 4GB")


def load_conf(netconf: dict[str, Any]) -> BandwidthConf:
    name = netconf.get("name")
    if not name:
        raise errors.ConfigError("failed to load bandwidth config: missing network 'name'")
    raw = (netconf.get("runtimeConfig") or {}).get("bandwidth") or netconf
    conf = BandwidthConf(
        network=str(name),
        ingress_rate=_int(raw, "ingressRate"),
        ingress_burst=_int(raw, "ingressBurst"),
        egress_rate=_int(raw, "egressRate"),
        egress_burst=_int(raw, "egressBurst"),
    )
    _validate(conf.ingress_rate, conf.ingress_burst, "ingress")
    _validate(conf.egress_rate, conf.egress_burst, "egress")
    prev = netconf.get("prevResult")
    conf.prev_result = normalize(prev) if isinstance(prev, dict) else None
    return conf


def ifb_name(network: str, container_id: str) -> str:
    digest = hashlib.sha512((network + container_id).encode()).hexdigest()
    return IFB_PREFIX + digest[: MAX_IFNAME - len(IFB_PREFIX)]


def _host_interface(args: skel.CmdArgs, result: dict[str, Any], host: Namespace) -> str:
    """The host end of the container's veth, which must be one of the result's interfaces."""
    from netplugins import netlink

    with netlink.Namespace(args.netns) as cont:
        inner = cont.require_link(args.ifname)
    peer = host.link_by_index(inner.peer_index) if inner.peer_index else None
    names = {i.get("name") for i in result.get("interfaces") or [] if not i.get("sandbox")}
    if peer is None or peer.name not in names:
        raise errors.NetPluginError(
            f"failed to find the host interface of {args.ifname} in the previous result"
        )
    return peer.name


def cmd_add(args: skel.CmdArgs) -> dict[str, Any]:
    from netplugins import netlink

    conf = load_conf(args.netconf)
    if conf.prev_result is None:
        raise errors.ConfigError("must be called as chained plugin: missing prevResult")
    result = conf.prev_result
    if not (conf.ingress_rate or conf.egress_rate):
        return result
    with netlink.Namespace() as host:
        veth = _host_interface(args, result, host)
        if conf.ingress_rate:
            host.set_tbf(veth, conf.ingress_rate, conf.ingress_burst // 8, LATENCY_MS)
        if conf.egress_rate:
            ifb = ifb_name(conf.network, args.container_id)
            owner = comment(conf.network, args.container_id)
            host.ensure_ifb(ifb, host.require_link(veth).mtu, alias=owner)
            try:
                host.redirect_ingress(veth, ifb)
                host.set_tbf(ifb, conf.egress_rate, conf.egress_burst // 8, LATENCY_MS)
            except errors.NetPluginError:
                host.delete_link(ifb)
                raise
            ifb_link = host.require_link(ifb)
            result.setdefault("interfaces", []).append({"name": ifb, "mac": ifb_link.mac})
    return result


def cmd_del(args: skel.CmdArgs) -> None:
    from netplugins import netlink

    conf = load_conf(args.netconf)
    with netlink.Namespace() as host:
        host.delete_link(ifb_name(conf.network, args.container_id))


def cmd_check(args: skel.CmdArgs) -> None:
    from netplugins import netlink

    conf = load_conf(args.netconf)
    if conf.prev_result is None:
        raise errors.ConfigError("must be called as chained plugin: missing prevResult")
    with netlink.Namespace() as host:
        veth = _host_interface(args, conf.prev_result, host)
        if conf.ingress_rate and "tbf" not in host.qdisc_kinds(veth):
            raise errors.CheckFailed(f"bandwidth: no tbf qdisc on {veth}")
        if conf.egress_rate:
            ifb = ifb_name(conf.network, args.container_id)
            if host.link(ifb) is None or "tbf" not in host.qdisc_kinds(ifb):
                raise errors.CheckFailed(f"bandwidth: ifb device {ifb} or its tbf is missing")
            if "ingress" not in host.qdisc_kinds(veth):
                raise errors.CheckFailed(f"bandwidth: no ingress redirect on {veth}")


def cmd_gc(args: skel.CmdArgs) -> None:
    """SPEC 1.1 GC: remove this network's ifb devices whose container is not valid any more.

    The device name is a hash; ADD labels the device with the ifalias
    ``name: "<net>" id: "<container id>"`` (the masquerade rules' comment), which is how a
    leftover of this network is told from another network's. Unlabelled ifb devices (made by
    the reference plugin) are never touched.
    """
    from netplugins import netlink

    name = args.netconf.get("name")
    if not name:
        raise errors.ConfigError("failed to garbage collect bandwidth: missing network 'name'")
    network = str(name)
    valid = {
        str(a.get("containerID", ""))
        for a in args.netconf.get("cni.dev/valid-attachments") or []
        if isinstance(a, dict)
    }
    prefix = comment(network, "")[:-1]  # 'name: "<net>" id: "'
    with netlink.Namespace() as host:
        for link in host.links():
            if link.kind != "ifb" or not link.alias.startswith(prefix):
                continue
            container_id = link.alias[len(prefix) : -1]
            if link.alias != comment(network, container_id) or container_id in valid:
                continue
            if link.name == ifb_name(network, container_id):
                host.delete_link(link.name)


PLUGIN = skel.PluginSpec(name="bandwidth", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc)


def main() -> None:
    skel.main(PLUGIN)
