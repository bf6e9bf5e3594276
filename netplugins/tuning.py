"""tuning: sysctls and link attributes of the container interface (reference meta/tuning).

Chained after a main plugin: writes ``sysctl`` (network subsystem only, like the reference),
sets ``mac`` (also from the ``mac`` capability), ``mtu``, ``promisc`` and ``allmulti`` on
CNI_IFNAME, and passes the previous result on with the new MAC. The original link attributes
are saved as ``<dataDir>/<container id>_<ifname>.json`` (default dataDir ``/run/cni/tuning``)
and restored by DEL; sysctls die with the namespace, as with the reference. GC drops the saved
state of lost attachments, found through owner records in ``<dataDir>/.owners``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from cnilib.atomic import is_temp_file, sweep_temp_files, write_atomic
from netplugins import errors, nsenter, skel
from netplugins.result import normalize
from netplugins.statefiles import state_path

DEFAULT_DATA_DIR = "/run/cni/tuning"
# Beside the reference-format state files: which network each one belongs to (for GC; the
# state file's name and content stay exactly the reference's).
OWNERS_DIR = ".owners"
_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


@dataclass
class TuningConf:
    sysctl: dict[str, str] = field(default_factory=dict)
    mac: str = ""
    mtu: int = 0
    promisc: bool | None = None
    allmulti: bool | None = None
    data_dir: str = DEFAULT_DATA_DIR
    prev_result: dict[str, Any] | None = None


def load_conf(netconf: dict[str, Any]) -> TuningConf:
    sysctl = {str(k): str(v) for k, v in (netconf.get("sysctl") or {}).items()}
    for key in sysctl:
        # The very path write_sysctl will open: checked after normalising, so neither
        # spelling can climb out of net/ ("net/../kernel/x").
        path = os.path.normpath(nsenter.sysctl_path(key))
        if not path.startswith("/proc/sys/net/"):
            raise errors.ConfigError(f"invalid net sysctl key: {key!r}")
    mac = str((netconf.get("runtimeConfig") or {}).get("mac") or netconf.get("mac") or "")
    if mac and not _MAC.match(mac):
        raise errors.ConfigError(f"invalid MAC address {mac!r}")
    prev = netconf.get("prevResult")
    return TuningConf(
        sysctl=sysctl,
        mac=mac.lower(),
        mtu=int(netconf.get("mtu") or 0),
        promisc=netconf.get("promisc") if "promisc" in netconf else None,
        allmulti=netconf.get("allmulti") if "allmulti" in netconf else None,
        data_dir=str(netconf.get("dataDir") or DEFAULT_DATA_DIR),
        prev_result=normalize(prev) if isinstance(prev, dict) else None,
    )


def _state_name(args: skel.CmdArgs) -> str:
    return f"{args.container_id}_{args.ifname}.json"


def _saved_path(conf: TuningConf, args: skel.CmdArgs) -> str:
    return state_path(conf.data_dir, _state_name(args), "container id / ifname")


def _owner_path(conf: TuningConf, args: skel.CmdArgs) -> str:
    owners = os.path.join(conf.data_dir, OWNERS_DIR)
    return state_path(owners, _state_name(args), "container id / ifname")


def cmd_add(args: skel.CmdArgs) -> dict[str, Any]:
    from netplugins import netlink

    conf = load_conf(args.netconf)
    if conf.prev_result is None:
        raise errors.ConfigError("must be called as chained plugin: missing prevResult")
    result = conf.prev_result
    with nsenter.entered(args.netns):
        for key, value in conf.sysctl.items():
            nsenter.write_sysctl(key, value)
    with netlink.Namespace(args.netns) as ns:
        link = ns.require_link(args.ifname)
        original: dict[str, Any] = {}
        if conf.mac:
            original["mac"] = link.mac
        if conf.promisc is not None:
            original["promisc"] = link.promisc
        if conf.mtu:
            original["mtu"] = link.mtu
        if conf.allmulti is not None:
            original["allmulti"] = link.allmulti
        if original:
            _save(_saved_path(conf, args), original)
            if args.netconf.get("name"):
                owner = {
                    "network": str(args.netconf["name"]),
                    "containerID": args.container_id,
                    "ifname": args.ifname,
                }
                _save(_owner_path(conf, args), owner)
        if conf.mac:
            ns.set_mac(args.ifname, conf.mac)
            for iface in result.get("interfaces") or []:
                if iface.get("name") == args.ifname and iface.get("sandbox") == args.netns:
                    iface["mac"] = conf.mac
        if conf.promisc is not None:
            ns.set_flag(args.ifname, netlink.IFF_PROMISC, bool(conf.promisc))
        if conf.mtu:
            ns.set_mtu(args.ifname, conf.mtu)
        if conf.allmulti is not None:
            ns.set_flag(args.ifname, netlink.IFF_ALLMULTI, bool(conf.allmulti))
    return result


def _save(path: str, data: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        write_atomic(path, json.dumps(data).encode(), mode=0o600)
    except OSError as exc:
        raise errors.IOFailure(f"failed to save tuning state {path}", str(exc)) from exc


def cmd_del(args: skel.CmdArgs) -> None:
    from netplugins import netlink

    conf = load_conf(args.netconf)
    path = _saved_path(conf, args)
    try:
        with open(path) as fh:
            original = json.load(fh)
    except FileNotFoundError:
        with contextlib.suppress(FileNotFoundError):
            os.remove(_owner_path(conf, args))
        return
    except (OSError, ValueError) as exc:
        raise errors.IOFailure(f"failed to read saved tuning state {path}", str(exc)) from exc
    if args.netns and nsenter.netns_exists(args.netns):
        with netlink.Namespace(args.netns) as ns:
            if ns.link(args.ifname) is not None:
                if "mtu" in original:
                    ns.set_mtu(args.ifname, int(original["mtu"]))
                if "mac" in original:
                    ns.set_mac(args.ifname, str(original["mac"]))
                if "promisc" in original:
                    ns.set_flag(args.ifname, netlink.IFF_PROMISC, bool(original["promisc"]))
                if "allmulti" in original:
                    ns.set_flag(args.ifname, netlink.IFF_ALLMULTI, bool(original["allmulti"]))
    for done in (path, _owner_path(conf, args)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(done)


def cmd_check(args: skel.CmdArgs) -> None:
    from netplugins import netlink

    conf = load_conf(args.netconf)
    if conf.prev_result is None:
        raise errors.ConfigError("must be called as chained plugin: missing prevResult")
    for key, value in conf.sysctl.items():
        have = nsenter.read_sysctl(key, args.netns)
        if have != value:
            raise errors.CheckFailed(f"sysctl {key} is {have!r}, expected {value!r}")
    with netlink.Namespace(args.netns) as ns:
        link = ns.require_link(args.ifname)
    wrong = [
        name
        for name, want, have in (
            ("mac", conf.mac or None, link.mac),
            ("mtu", conf.mtu or None, link.mtu),
            ("promisc", conf.promisc, link.promisc),
            ("allmulti", conf.allmulti, link.allmulti),
        )
        if want is not None and want != have
    ]
    if wrong:
        raise errors.CheckFailed(f"tuning: {', '.join(wrong)} of {args.ifname} changed")


def cmd_gc(args: skel.CmdArgs) -> None:
    """SPEC 1.1 GC: forget the saved state of this network's attachments that are not valid.

    Their interface is gone with their namespace, so there is nothing left to restore. Only
    state whose owner record names this network is touched: ``dataDir`` is shared by every
    network using tuning, and state without an owner record (the reference's) is left alone.
    """
    name = args.netconf.get("name")
    if not name:
        raise errors.ConfigError("failed to garbage collect tuning: missing network 'name'")
    conf = load_conf(args.netconf)
    valid = {
        (str(a.get("containerID", "")), str(a.get("ifname", "")))
        for a in args.netconf.get("cni.dev/valid-attachments") or []
        if isinstance(a, dict)
    }
    owners = os.path.join(conf.data_dir, OWNERS_DIR)
    for directory in (conf.data_dir, owners):  # leftovers of saves killed half-way
        sweep_temp_files(directory)
    try:
        names = sorted(os.listdir(owners))
    except FileNotFoundError:
        return
    for entry in names:
        if is_temp_file(entry) or ".tmp" in entry or not entry.endswith(".json"):
            continue  # a save in progress (see _save)
        owner_file = os.path.join(owners, entry)
        try:
            with open(owner_file) as fh:
                owner = json.load(fh)
        except (OSError, ValueError):
            continue  # unreadable: not provably this network's
        if not isinstance(owner, dict) or owner.get("network") != name:
            continue
        attachment = (str(owner.get("containerID", "")), str(owner.get("ifname", "")))
        if attachment in valid or entry != f"{attachment[0]}_{attachment[1]}.json":
            continue
        for done in (os.path.join(conf.data_dir, entry), owner_file):
            with contextlib.suppress(FileNotFoundError):
                os.remove(done)


PLUGIN = skel.PluginSpec(name="tuning", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc)


def main() -> None:
    skel.main(PLUGIN)
