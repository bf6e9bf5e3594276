"""host-local IPAM: addresses from configured ranges, reserved on local disk.

Drop-in for the reference plugin (plugins/ipam/host-local): same configuration, same state
layout (see :mod:`netplugins.ipam_store`), same allocation order (round-robin after the last
reserved address of each range set, skipping the gateway). One flock per network serialises
concurrent ADD/DEL/GC.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cnilib.atomic import sweep_temp_files
from netplugins import errors, skel
from netplugins.ipam_store import Reservation, Store

DEFAULT_DATA_DIR = "/var/lib/cni/networks"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Range:
    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress | None

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.start.version and int(self.start) <= int(ip) <= int(self.end)


@dataclass
class IPAMConfig:
    network: str
    range_sets: list[list[Range]]
    routes: list[dict[str, Any]] = field(default_factory=list)
    data_dir: str = DEFAULT_DATA_DIR
    requested: list[IPAddress] = field(default_factory=list)
    dns: dict[str, Any] = field(default_factory=dict)


def _addr(value: Any, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(str(value).split("/")[0])
    except ValueError as exc:
        raise errors.ConfigError(f"failed to parse {what} {value!r}: not an IP address") from exc


def _parse_range(raw: Any) -> Range:
    if not isinstance(raw, dict):
        raise errors.ConfigError(f"failed to parse ipam range {raw!r}: not an object")
    if "subnet" not in raw:
        raise errors.ConfigError("failed to parse ipam range: missing 'subnet'")
    try:
        subnet = ipaddress.ip_network(str(raw["subnet"]), strict=False)
    except ValueError as exc:
        raise errors.ConfigError(f"failed to parse ipam subnet {raw['subnet']!r}") from exc
    # The reference refuses /31, /32 (and /127, /128): nothing left after network+gateway.
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        raise errors.ConfigError(f"network {subnet} too small to allocate from")
    first = subnet.network_address + 1
    last = subnet.broadcast_address - 1 if subnet.version == 4 else subnet.broadcast_address
    start = _addr(raw["rangeStart"], "rangeStart") if raw.get("rangeStart") else first
    end = _addr(raw["rangeEnd"], "rangeEnd") if raw.get("rangeEnd") else last
    gateway = _addr(raw["gateway"], "gateway") if raw.get("gateway") else first
    for name, ip in (("rangeStart", start), ("rangeEnd", end)):
        if ip not in subnet:
            raise errors.ConfigError(f"{name} {ip} not in network {subnet}")
    if int(start) > int(end):
        raise errors.ConfigError(f"rangeStart {start} is after rangeEnd {end}")
    return Range(subnet, start, end, gateway)


def _overlaps(a: Range, b: Range) -> bool:
    return a.start.version == b.start.version and (
        int(a.start) <= int(b.end) and int(b.start) <= int(a.end)
    )


def _requested_ips(netconf: dict[str, Any], args: skel.CmdArgs) -> list[IPAddress]:
    """Static addresses from CNI_ARGS ``IP=``, ``args.cni.ips`` or ``runtimeConfig.ips``."""
    wanted: list[Any] = []
    env_ip = args.args_pairs().get("IP", "") if args.args else ""
    wanted += [x for x in env_ip.split(",") if x]
    cni_args = (netconf.get("args") or {}).get("cni") or {}
    wanted += list(cni_args.get("ips") or [])
    wanted += list((netconf.get("runtimeConfig") or {}).get("ips") or [])
    out: list[IPAddress] = []
    for item in wanted:
        ip = _addr(item, "requested ip")
        if ip not in out:
            out.append(ip)
    return out


def _raw_range_sets(netconf: dict[str, Any], ipam: dict[str, Any]) -> list[Any]:
    """The range sets in the reference's order: ``runtimeConfig.ipRanges`` (the ``ipRanges``
    capability: the node's pod CIDRs), then the top-level ``subnet`` shorthand, then
    ``ranges``. The reference prepends rather than replaces, so a config with static ranges
    as well gets one address from each set, exactly as with the reference binary.
    """
    runtime_ranges = (netconf.get("runtimeConfig") or {}).get("ipRanges") or []
    static_ranges = ipam.get("ranges") or []
    for what, value in (("runtimeConfig.ipRanges", runtime_ranges), ("ranges", static_ranges)):
        if not isinstance(value, list):
            raise errors.ConfigError(f"failed to load host-local config: {what} must be a list")
    raw_sets: list[Any] = list(runtime_ranges)
    if ipam.get("subnet"):
        raw_sets.append(
            [{k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}]
        )
    raw_sets += static_ranges
    if not raw_sets:
        raise errors.ConfigError("failed to load host-local config: no IP ranges specified")
    return raw_sets


def _parse_range_set(raw_set: Any, index: int) -> list[Range]:
    """One set: non-empty, one address family (each set yields one address), no overlaps."""
    if not raw_set or not isinstance(raw_set, list):
        raise errors.ConfigError(f"invalid range set {index}: empty range set")
    ranges = [_parse_range(r) for r in raw_set]
    if len({r.subnet.version for r in ranges}) > 1:
        raise errors.ConfigError(f"invalid range set {index}: mixed address families")
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            if _overlaps(a, b):
                raise errors.ConfigError(
                    f"invalid range set {index}: subnets {a.subnet} and {b.subnet} overlap"
                )
    return ranges


def load_conf(args: skel.CmdArgs) -> IPAMConfig:
    netconf = args.netconf
    ipam = netconf.get("ipam")
    if not isinstance(ipam, dict):
        raise errors.ConfigError("failed to load host-local config: missing 'ipam' section")
    range_sets = [_parse_range_set(raw, i) for i, raw in enumerate(_raw_range_sets(netconf, ipam))]
    # As the reference: no two sets may share an address either, or one container could be
    # handed the same address twice (and two containers could fight over it).
    for i, first in enumerate(range_sets):
        for j, second in enumerate(range_sets[i + 1 :], start=i + 1):
            if any(_overlaps(a, b) for a in first for b in second):
                raise errors.ConfigError(f"range set {i} overlaps with {j}")
    name = netconf.get("name")
    if not name:
        raise errors.ConfigError("failed to load host-local config: missing network 'name'")
    return IPAMConfig(
        network=str(name),
        range_sets=range_sets,
        routes=list(ipam.get("routes") or []),
        data_dir=str(ipam.get("dataDir") or DEFAULT_DATA_DIR),
        requested=_requested_ips(netconf, args),
        dns=_parse_resolv_conf(ipam.get("resolvConf")),
    )


def _parse_resolv_conf(path: Any) -> dict[str, Any]:
    if not path:
        return {}
    dns: dict[str, Any] = {}
    try:
        with open(str(path)) as fh:
            for line in fh:
                fields = line.split()
                if len(fields) < 2:
                    continue
                if fields[0] == "nameserver":
                    dns.setdefault("nameservers", []).append(fields[1])
                elif fields[0] == "domain":
                    dns["domain"] = fields[1]
                elif fields[0] == "search":
                    dns["search"] = fields[1:]
                elif fields[0] == "options":
                    dns.setdefault("options", []).extend(fields[1:])
    except OSError as exc:
        raise errors.ConfigError(f"failed to read resolvConf {path}", str(exc)) from exc
    return dns


def _candidates(ranges: list[Range], last: IPAddress | None) -> Iterator[tuple[Range, IPAddress]]:
    """Every address of the set once, starting right after ``last`` (reference RangeIter)."""
    start_range, start_at = 0, int(ranges[0].start)
    if last is not None:
        for i, r in enumerate(ranges):
            if r.contains(last):
                if int(last) < int(r.end):
                    start_range, start_at = i, int(last) + 1
                else:
                    start_range = (i + 1) % len(ranges)
                    start_at = int(ranges[start_range].start)
                break
    for step in range(len(ranges) + 1):
        r = ranges[(start_range + step) % len(ranges)]
        make = type(r.start)
        gateway = int(r.gateway) if r.gateway is not None else -1
        if step == 0:
            first, stop = start_at, int(r.end)
        elif step == len(ranges):
            # Wrapped around: the head of the first range that step 0 skipped.
            first, stop = int(r.start), start_at - 1
        else:
            first, stop = int(r.start), int(r.end)
        for n in range(first, stop + 1):
            if n != gateway:
                yield r, make(n)


def _ip_entry(r: Range, ip: IPAddress) -> dict[str, Any]:
    entry: dict[str, Any] = {"address": f"{ip}/{r.subnet.prefixlen}"}
    if r.gateway is not None:
        entry["gateway"] = str(r.gateway)
    return entry


def _allocate(
    store: Store, conf: IPAMConfig, args: skel.CmdArgs, taken: list[Reservation]
) -> list[dict[str, Any]]:
    """Reserve one address per range set; every reservation made is appended to ``taken``."""
    ips: list[dict[str, Any]] = []
    held = store.held_by(args.container_id, args.ifname)
    requested = list(conf.requested)
    for idx, ranges in enumerate(conf.range_sets):
        for res in held:
            if any(r.contains(res.ip) for r in ranges):
                raise errors.NetPluginError(
                    f"{res.ip} has been allocated to {args.container_id}, "
                    "duplicate allocation is not allowed"
                )
        wanted = next((ip for ip in requested if any(r.contains(ip) for r in ranges)), None)
        if wanted is not None:
            requested.remove(wanted)
            r = next(r for r in ranges if r.contains(wanted))
            if wanted == r.gateway:
                # The gateway belongs to the bridge (or router), never to a container: the
                # reference refuses it too, whichever way it was requested.
                raise errors.NetPluginError(
                    f"failed to allocate for range {idx}: requested ip {wanted} is subnet's gateway"
                )
            if not store.reserve(wanted, args.container_id, args.ifname, idx):
                raise errors.NetPluginError(
                    f"requested IP address {wanted} is not available in range set "
                    f"{_describe(ranges)}"
                )
            taken.append(Reservation(wanted, args.container_id, args.ifname))
            ips.append(_ip_entry(r, wanted))
            continue
        for r, ip in _candidates(ranges, store.last_reserved(idx)):
            if store.reserve(ip, args.container_id, args.ifname, idx):
                taken.append(Reservation(ip, args.container_id, args.ifname))
                ips.append(_ip_entry(r, ip))
                break
        else:
            raise errors.AddressExhausted(
                f"no IP addresses available in range set: {_describe(ranges)}"
            )
    if requested:
        raise errors.NetPluginError(
            f"failed to allocate requested IPs {[str(ip) for ip in requested]}: "
            "not in any range set"
        )
    return ips


def _describe(ranges: list[Range]) -> str:
    return ",".join(f"{r.start}-{r.end}" for r in ranges)


def cmd_add(args: skel.CmdArgs) -> dict[str, Any]:
    conf = load_conf(args)
    store = Store(conf.data_dir, conf.network)
    taken: list[Reservation] = []
    with store.locked():
        try:
            ips = _allocate(store, conf, args, taken)
        except errors.NetPluginError:
            # Never leak part of a dual-stack allocation (SEED-NOTES "known pain").
            for res in taken:
                store.release(res)
            raise
    result: dict[str, Any] = {"ips": ips, "routes": conf.routes}
    if conf.dns:
        result["dns"] = conf.dns
    return result


def cmd_del(args: skel.CmdArgs) -> None:
    conf = load_conf(args)
    store = Store(conf.data_dir, conf.network)
    with store.locked():
        for res in store.held_by(args.container_id, args.ifname):
            store.release(res)


def cmd_check(args: skel.CmdArgs) -> None:
    conf = load_conf(args)
    store = Store(conf.data_dir, conf.network)
    with store.locked():
        if not store.held_by(args.container_id, args.ifname):
            raise errors.CheckFailed(
                f"host-local: failed to find address added by container {args.container_id}"
            )


def cmd_gc(args: skel.CmdArgs) -> None:
    """SPEC 1.1 GC: release every reservation not in ``cni.dev/valid-attachments``."""
    conf = load_conf(args)
    valid = {
        (str(a.get("containerID", "")), str(a.get("ifname", "")))
        for a in args.netconf.get("cni.dev/valid-attachments") or []
    }
    store = Store(conf.data_dir, conf.network)
    with store.locked():
        for res in store.reservations():
            if not _is_valid(res, valid):
                store.release(res)
        # Every write to the store happens under this lock: any temp file is a crash's.
        sweep_temp_files(store.dir, max_age=0)


def _is_valid(res: Reservation, valid: set[tuple[str, str]]) -> bool:
    if res.ifname:
        return (res.container_id, res.ifname) in valid
    return any(cid == res.container_id for cid, _ in valid)


PLUGIN = skel.PluginSpec(name="host-local", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc)


def main() -> None:
    skel.main(PLUGIN)
