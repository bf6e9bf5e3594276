"""loopback: bring ``lo`` up in the container namespace (reference plugins/main/loopback).

Uses ioctl(2) (:mod:`netplugins.ifreq`) rather than netlink: it is the whole job, and it keeps
a cold exec of this plugin free of the pyroute2 import.
"""

from __future__ import annotations

from typing import Any

from netplugins import errors, ifreq, nsenter, skel
from netplugins.result import normalize

IFF_UP = 0x1


def cmd_add(args: skel.CmdArgs) -> dict[str, Any]:
    with nsenter.entered(args.netns):
        flags = ifreq.get_flags("lo")
        if not flags & IFF_UP:
            ifreq.set_flags("lo", flags | IFF_UP)
        v4 = ifreq.ipv4_address("lo")
        addrs = ([v4] if v4 else []) + ifreq.ipv6_addresses("lo")
    prev = args.netconf.get("prevResult")
    if isinstance(prev, dict):
        # Chained after another plugin: pass its result through, as the reference does.
        return normalize(prev)
    return {
        "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": args.netns}],
        "ips": [{"interface": 0, "address": a} for a in addrs],
        "dns": {},
    }


def cmd_del(args: skel.CmdArgs) -> None:
    # SPEC "DEL": a vanished namespace means there is nothing left to undo.
    if not nsenter.netns_exists(args.netns):
        return
    try:
        with nsenter.entered(args.netns):
            flags = ifreq.get_flags("lo")
            if flags & IFF_UP:
                ifreq.set_flags("lo", flags & ~IFF_UP)
    except nsenter.NamespaceGone:
        return


def cmd_check(args: skel.CmdArgs) -> None:
    with nsenter.entered(args.netns):
        up = bool(ifreq.get_flags("lo") & IFF_UP)
    if not up:
        raise errors.CheckFailed(f"loopback interface is down in {args.netns}")


PLUGIN = skel.PluginSpec(name="loopback", add=cmd_add, delete=cmd_del, check=cmd_check)


def main() -> None:
    skel.main(PLUGIN)
