"""`cnitool`: run a network configuration by hand, like the Go cnitool.

    cnitool add|check|del|gc|status|version <network> [<netns path>]

Environment (as Go's cnitool): NETCONFPATH (default /etc/cni/net.d), CNI_PATH,
CNI_ARGS (`k=v;k=v`), CAP_ARGS (JSON object of capability args), CNI_IFNAME (default
eth0), CNI_CONTAINERID (default: derived from the netns path, see `container_id_for`).
Extension: CNI_CACHE_DIR (default /var/lib/cni, libcni's), so tests never touch the
host's cache. Results go to stdout as JSON; errors to stderr with exit status 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from cnilib.api import CNIConfig
from cnilib.conf import find_conf_list
from cnilib.errors import CNIError
from cnilib.types import RuntimeConf

DEFAULT_NETCONFPATH = "/etc/cni/net.d"
DEFAULT_CACHE_DIR = "/var/lib/cni"
DEFAULT_IFNAME = "eth0"
COMMANDS = ("add", "check", "del", "gc", "status", "version")
# Commands that act on one attachment and so need a netns path.
_ATTACHMENT_COMMANDS = ("add", "check", "del")


class UsageError(Exception):
    pass


def container_id_for(netns: str) -> str:
    """Go cnitool's container id: "cnitool-" + hex of the first 10 bytes of the SHA-512
    of the absolute netns path. Same id means our cnitool and Go's share cache files."""
    digest = hashlib.sha512(os.path.abspath(netns).encode()).digest()
    return "cnitool-" + digest[:10].hex()


def parse_cni_args(text: str) -> tuple[tuple[str, str], ...]:
    """`K=V;K=V`; like Go cnitool, each pair needs exactly one '=' and both sides."""
    pairs: list[tuple[str, str]] = []
    for pair in text.split(";"):
        parts = pair.split("=")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise UsageError(f"invalid CNI_ARGS pair {pair!r}")
        pairs.append((parts[0], parts[1]))
    return tuple(pairs)


def parse_cap_args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise UsageError(f"CAP_ARGS is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise UsageError("CAP_ARGS must be a JSON object")
    return value


def runtime_conf(netns: str, env: Mapping[str, str]) -> RuntimeConf:
    netns = os.path.abspath(netns) if netns else ""
    args = env.get("CNI_ARGS", "")
    caps = env.get("CAP_ARGS", "")
    return RuntimeConf(
        container_id=env.get("CNI_CONTAINERID") or container_id_for(netns),
        netns=netns,
        # Go uses LookupEnv: only an unset CNI_IFNAME gets the default.
        ifname=env.get("CNI_IFNAME", DEFAULT_IFNAME),
        args=parse_cni_args(args) if args else (),
        capability_args=parse_cap_args(caps) if caps else {},
    )


def run(argv: Sequence[str], env: Mapping[str, str], out: Any) -> None:
    if len(argv) < 2 or argv[0] not in COMMANDS:
        raise UsageError("usage: cnitool add|check|del|gc|status|version <network> [<netns path>]")
    command, network = argv[0], argv[1]
    netns = argv[2] if len(argv) > 2 else ""
    if command in _ATTACHMENT_COMMANDS and not netns:
        raise UsageError(f"cnitool {command} needs a netns path")
    net = find_conf_list(env.get("NETCONFPATH") or DEFAULT_NETCONFPATH, network)
    bin_dirs = [d for d in env.get("CNI_PATH", "").split(os.pathsep) if d]
    cni = CNIConfig(bin_dirs, env.get("CNI_CACHE_DIR") or DEFAULT_CACHE_DIR)
    if command == "add":
        result = cni.add_network_list(net, runtime_conf(netns, env))
        _print(out, result.to_dict())
    elif command == "check":
        cni.check_network_list(net, runtime_conf(netns, env))
    elif command == "del":
        cni.del_network_list(net, runtime_conf(netns, env))
    elif command == "gc":
        # As Go cnitool: no valid attachments, so every cached attachment of the
        # network is deleted before the plugins' own GC.
        cni.gc_network_list(net, [])
    elif command == "status":
        cni.get_status_network_list(net)
    else:
        plugins = {p.type: {"supportedVersions": cni.get_version_info(p.type)} for p in net.plugins}
        _print(
            out,
            {"network": net.name, "cniVersion": cni.negotiated_version(net), "plugins": plugins},
        )


def _print(out: Any, obj: Mapping[str, Any]) -> None:
    out.write(json.dumps(obj, indent=4) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        run(args, os.environ, sys.stdout)
    except UsageError as err:
        print(err, file=sys.stderr)
        return 1
    except CNIError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
