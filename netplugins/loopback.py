"""loopback: bring ``lo`` up in the container namespace (reference plugins/main/loopback)."""

from __future__ import annotations

from typing import Any

from netplugins import errors, skel
from netplugins.result import normalize


def cmd_add(args: skel.CmdArgs) -> dict[str, Any]:
    from netplugins import netlink

    with netlink.Namespace(args.netns) as ns:
        ns.set_up("lo")
        addrs = ns.addresses("lo")
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
    from netplugins import netlink

    # SPEC "DEL": a vanished namespace means there is nothing left to undo.
    if not netlink.netns_exists(args.netns):
        return
    try:
        with netlink.Namespace(args.netns) as ns:
            if ns.link("lo") is not None:
                ns.set_flag("lo", netlink.IFF_UP, False)
    except netlink.NamespaceGone:
        return


def cmd_check(args: skel.CmdArgs) -> None:
    from netplugins import netlink

    with netlink.Namespace(args.netns) as ns:
        info = ns.require_link("lo")
    if not info.up:
        raise errors.CheckFailed(f"loopback interface is down in {args.netns}")


PLUGIN = skel.PluginSpec(name="loopback", add=cmd_add, delete=cmd_del, check=cmd_check)


def main() -> None:
    skel.main(PLUGIN)
