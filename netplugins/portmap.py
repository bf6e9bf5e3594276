"""portmap: host ports DNAT'd to the container (reference plugins/meta/portmap, iptables mode).

Layout, identical to the reference so both can coexist on a node and clean up after each other:

- ``nat CNI-HOSTPORT-DNAT``, entered from PREROUTING and OUTPUT for ``--dst-type LOCAL``, holds
  one multiport jump per protocol into the container's ``CNI-DN-<hash(network+id)>`` chain.
- ``CNI-DN-...`` per mapping: mark hairpin traffic (from the container itself) and, for IPv4,
  traffic from 127.0.0.1, then DNAT to ``<container ip>:<containerPort>``.
- ``CNI-HOSTPORT-SETMARK`` sets the masquerade mark; ``CNI-HOSTPORT-MASQ``, entered first
  from POSTROUTING, masquerades marked packets. 127.0.0.1 can only be DNAT'd off the host
  with ``route_localnet`` on the interface that routes to the container.

DEL removes only this container's chain and the jumps into it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from netplugins import errors, ifreq, nsenter, skel
from netplugins.iptables import IPTables, Snapshot, chain_name, format_rule, ids_in_comments
from netplugins.result import normalize

TOP_DNAT = "CNI-HOSTPORT-DNAT"
SETMARK = "CNI-HOSTPORT-SETMARK"
MASQ = "CNI-HOSTPORT-MASQ"
DEFAULT_MARK_BIT = 13
MULTIPORT_MAX = 15  # iptables multiport accepts at most 15 ports per rule


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: str
    host_ip: str


@dataclass
class PortMapConf:
    network: str
    snat: bool = True
    mark_bit: int = DEFAULT_MARK_BIT
    external_setmark: str = ""
    mappings: list[PortMapping] = field(default_factory=list)
    prev_result: dict[str, Any] | None = None


def load_conf(netconf: dict[str, Any]) -> PortMapConf:
    name = netconf.get("name")
    if not name:
        raise errors.ConfigError("failed to load portmap config: missing network 'name'")
    mappings = []
    for raw in (netconf.get("runtimeConfig") or {}).get("portMappings") or []:
        try:
            mapping = PortMapping(
                host_port=int(raw["hostPort"]),
                container_port=int(raw["containerPort"]),
                protocol=str(raw.get("protocol") or "tcp").lower(),
                host_ip=str(raw.get("hostIP") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.ConfigError(f"failed to parse port mapping {raw!r}: {exc}") from exc
        for port in (mapping.host_port, mapping.container_port):
            if not 0 < port < 65536:
                raise errors.ConfigError(f"invalid port {port} in port mapping {raw!r}")
        mappings.append(mapping)
    mark_bit = int(netconf.get("markMasqBit", DEFAULT_MARK_BIT))
    if not 0 <= mark_bit <= 31:
        raise errors.ConfigError(f"invalid markMasqBit {mark_bit}: must be between 0 and 31")
    snat = netconf.get("snat", True)
    prev = netconf.get("prevResult")
    return PortMapConf(
        network=str(name),
        snat=bool(snat),
        mark_bit=mark_bit,
        external_setmark=str(netconf.get("externalSetMarkChain") or ""),
        mappings=mappings,
        prev_result=normalize(prev) if isinstance(prev, dict) else None,
    )


def _container_ips(
    result: dict[str, Any], ifname: str
) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The first IPv4 and first IPv6 address that belong to the container interface."""
    interfaces = result.get("interfaces") or []
    out: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
    for ip in result.get("ips") or []:
        idx = ip.get("interface")
        if isinstance(idx, int) and 0 <= idx < len(interfaces):
            iface = interfaces[idx]
            if iface.get("name") != ifname or not iface.get("sandbox"):
                continue
        addr = ipaddress.ip_interface(ip["address"])
        if all(a.version != addr.version for a in out):
            out.append(addr)
    return out


def _mark(bit: int) -> str:
    value = 1 << bit
    return f"{value:#x}/{value:#x}"


def _dnat_comment(conf: PortMapConf, container_id: str) -> str:
    return f'dnat name: "{conf.network}" id: "{container_id}"'[:256]


def _ensure_jump(ipt: IPTables, chain: str, rule: list[str], target: str, first: bool) -> None:
    full = [*rule, "-j", target]
    if first:
        ipt.insert_unique("nat", chain, full)
    else:
        ipt.append_unique("nat", chain, full)


def _setup_shared_chains(ipt: IPTables, conf: PortMapConf) -> str:
    mark = _mark(conf.mark_bit)
    setmark = conf.external_setmark or SETMARK
    if conf.snat:
        if not conf.external_setmark:
            ipt.ensure_chain("nat", SETMARK)
            ipt.append_unique(
                "nat",
                SETMARK,
                [
                    "-m",
                    "comment",
                    "--comment",
                    "CNI portfwd masquerade mark",
                    "-j",
                    "MARK",
                    "--set-xmark",
                    mark,
                ],
            )
        ipt.ensure_chain("nat", MASQ)
        ipt.append_unique("nat", MASQ, ["-m", "mark", "--mark", mark, "-j", "MASQUERADE"])
        # Prepended: the bridge/ptp masquerade rules further down would take the packet first.
        _ensure_jump(
            ipt,
            "POSTROUTING",
            ["-m", "comment", "--comment", "CNI portfwd requiring masquerade"],
            MASQ,
            first=True,
        )
    ipt.ensure_chain("nat", TOP_DNAT)
    for entry in ("PREROUTING", "OUTPUT"):
        _ensure_jump(ipt, entry, ["-m", "addrtype", "--dst-type", "LOCAL"], TOP_DNAT, False)
    return setmark


def _dnat_rules(
    conf: PortMapConf, addr: ipaddress.IPv4Interface | ipaddress.IPv6Interface, setmark: str
) -> list[list[str]]:
    rules: list[list[str]] = []
    for m in conf.mappings:
        base = ["-p", m.protocol, "--dport", str(m.host_port)]
        if m.host_ip:
            host_ip = ipaddress.ip_address(m.host_ip)
            if host_ip.version != addr.version:
                continue  # a mapping applies only to the container address of its family
            if not host_ip.is_unspecified:
                base += ["-d", m.host_ip]
        if conf.snat:
            # The whole container subnet (what the reference matches): a pod reaching a
            # neighbour's host port over the same bridge needs SNAT too, or the reply would
            # bypass the DNAT's conntrack on its way back.
            rules.append([*base, "-s", str(addr.network), "-j", setmark])
            if addr.version == 4:
                rules.append([*base, "-s", "127.0.0.1", "-j", setmark])
        target = (
            f"{addr.ip}:{m.container_port}"
            if addr.version == 4
            else (f"[{addr.ip}]:{m.container_port}")
        )
        rules.append([*base, "-j", "DNAT", "--to-destination", target])
    return rules


def _entry_rules(conf: PortMapConf, container_id: str) -> list[list[str]]:
    by_proto: dict[str, list[int]] = {}
    for m in conf.mappings:
        by_proto.setdefault(m.protocol, []).append(m.host_port)
    note = _dnat_comment(conf, container_id)
    out = []
    for proto in sorted(by_proto):
        ports = by_proto[proto]
        for i in range(0, len(ports), MULTIPORT_MAX):
            chunk = ",".join(str(p) for p in ports[i : i + MULTIPORT_MAX])
            out.append(
                [
                    "-m",
                    "comment",
                    "--comment",
                    note,
                    "-m",
                    "multiport",
                    "-p",
                    proto,
                    "--destination-ports",
                    chunk,
                ]
            )
    return out


def _teardown(ipt: IPTables, chain: str) -> None:
    """Remove the jumps into ``chain`` from CNI-HOSTPORT-DNAT, then the chain itself."""
    ipt.restore("nat", _teardown_lines(ipt.save("nat"), chain))


def _teardown_lines(state: Snapshot, chain: str) -> list[str]:
    lines = ["-D" + line[2:] for line in state.rules_in(TOP_DNAT) if line.endswith(f"-j {chain}")]
    if chain in state.chains:
        lines += [f"-F {chain}", f"-X {chain}"]
    return lines


def _shared_ready(state: Snapshot, conf: PortMapConf) -> bool:
    """Are the node-wide chains and their entry jumps in place (true after the first ADD)?"""
    mark = _mark(conf.mark_bit)

    def has(chain: str, *words: str) -> bool:
        return any(all(w in line for w in words) for line in state.rules_in(chain))

    ok = TOP_DNAT in state.chains and all(
        has(entry, "--dst-type LOCAL", f"-j {TOP_DNAT}") for entry in ("PREROUTING", "OUTPUT")
    )
    if conf.snat:
        ok = ok and has("POSTROUTING", f"-j {MASQ}") and has(MASQ, mark, "-j MASQUERADE")
        if not conf.external_setmark:
            ok = ok and has(SETMARK, f"--set-xmark {mark}")
    return ok


def _route_localnet(addr: ipaddress.IPv4Interface) -> None:
    """Let 127.0.0.1-sourced packets be routed to the container (reference does the same)."""
    dev = ifreq.ipv4_route_device(str(addr.ip))
    if dev:
        nsenter.write_sysctl(nsenter.iface_sysctl("ipv4", dev, "route_localnet"), "1")


def cmd_add(args: skel.CmdArgs) -> dict[str, Any]:
    conf = load_conf(args.netconf)
    if conf.prev_result is None:
        raise errors.ConfigError("must be called as chained plugin: missing prevResult")
    if not conf.mappings:
        return conf.prev_result
    chain = chain_name(conf.network, args.container_id, "DN-")
    for addr in _container_ips(conf.prev_result, args.ifname):
        ipt = IPTables(addr.version)
        # One iptables-save to look, one iptables-restore to write: each iptables exec costs
        # milliseconds, and a rule-by-rule -C/-A dance would take some twenty of them.
        state = ipt.save("nat")
        setmark = conf.external_setmark or SETMARK
        if not _shared_ready(state, conf):
            _setup_shared_chains(ipt, conf)  # first ADD on this node: idempotent slow path
        if conf.snat and addr.version == 4:
            assert isinstance(addr, ipaddress.IPv4Interface)
            _route_localnet(addr)
        # Start from a clean chain in case a previous ADD for this id left a partial one.
        lines = _teardown_lines(state, chain)
        lines.append(f"-N {chain}")
        lines += [format_rule(chain, rule) for rule in _dnat_rules(conf, addr, setmark)]
        lines += [
            format_rule(TOP_DNAT, [*rule, "-j", chain])
            for rule in _entry_rules(conf, args.container_id)
        ]
        ipt.restore("nat", lines)
    return conf.prev_result


def cmd_del(args: skel.CmdArgs) -> None:
    conf = load_conf(args.netconf)
    chain = chain_name(conf.network, args.container_id, "DN-")
    # With the cached result (SPEC >= 0.4.0 passes it on DEL) only its families can hold
    # rules; without one, look at both.
    versions = {4, 6}
    if conf.prev_result is not None and conf.prev_result.get("ips"):
        versions = {a.version for a in _container_ips(conf.prev_result, args.ifname)} or versions
    for version in sorted(versions):
        _teardown(IPTables(version), chain)


def cmd_check(args: skel.CmdArgs) -> None:
    conf = load_conf(args.netconf)
    if conf.prev_result is None:
        raise errors.ConfigError("must be called as chained plugin: missing prevResult")
    if not conf.mappings:
        return
    chain = chain_name(conf.network, args.container_id, "DN-")
    for addr in _container_ips(conf.prev_result, args.ifname):
        ipt = IPTables(addr.version)
        setmark = conf.external_setmark or SETMARK
        missing = [r for r in _dnat_rules(conf, addr, setmark) if not ipt.exists("nat", chain, r)]
        missing += [
            r
            for r in _entry_rules(conf, args.container_id)
            if not ipt.exists("nat", TOP_DNAT, [*r, "-j", chain])
        ]
        if missing:
            raise errors.CheckFailed(f"portmap: rules missing for {addr.ip}", repr(missing[0]))


def cmd_gc(args: skel.CmdArgs) -> None:
    """SPEC 1.1 GC: drop this network's port forwards whose container is not valid any more.

    The jump into each container's chain carries ``dnat name: "<net>" id: "<id>"``, which is
    how a leftover is recognised without knowing its (hashed) chain name in advance.
    """
    conf = load_conf(args.netconf)
    valid = {
        str(a.get("containerID", "")) for a in args.netconf.get("cni.dev/valid-attachments") or []
    }
    for version in (4, 6):
        ipt = IPTables(version)
        state = ipt.save("nat")
        stale_ids = ids_in_comments(state.rules_in(TOP_DNAT), conf.network, "dnat ") - valid
        stale = {chain_name(conf.network, cid, "DN-") for cid in stale_ids}
        lines: list[str] = []
        for chain in sorted(stale):
            lines += _teardown_lines(state, chain)
        ipt.restore("nat", lines)


PLUGIN = skel.PluginSpec(name="portmap", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc)


def main() -> None:
    skel.main(PLUGIN)
