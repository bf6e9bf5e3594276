"""``subnet.env``: the file our flannel CNI plugin (and flannel's) reads to learn the node's
subnet (CROSS-NODE.md section 1).

Written once the backend and the traffic rules are ready, so its presence means "the node's
network works" to the plugin's STATUS. Written atomically (temp + fsync + rename) so a plugin
never reads half a file; read back at start-up to ask for the same subnet again.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cnilib.atomic import write_atomic


@dataclass(frozen=True)
class SubnetEnv:
    network: ipaddress.IPv4Network
    subnet: ipaddress.IPv4Network
    mtu: int
    ip_masq: bool

    def render(self) -> str:
        # FLANNEL_SUBNET is the subnet's first host address with its length (10.244.3.1/24),
        # the gateway the bridge plugin puts on cni0.
        gateway = self.subnet.network_address + 1
        return (
            f"FLANNEL_NETWORK={self.network}\n"
            f"FLANNEL_SUBNET={gateway}/{self.subnet.prefixlen}\n"
            f"FLANNEL_MTU={self.mtu}\n"
            f"FLANNEL_IPMASQ={'true' if self.ip_masq else 'false'}\n"
        )


def write_subnet_file(path: str, env: SubnetEnv) -> None:
    # 0644 like flanneld's: the CNI plugin may run as another user.
    write_atomic(path, env.render().encode(), mode=0o644)


@dataclass(frozen=True)
class PreviousSubnet:
    """What a previous run left in ``subnet.env``: either field may be missing."""

    network: ipaddress.IPv4Network | None
    subnet: ipaddress.IPv4Network | None


def read_previous(path: str) -> PreviousSubnet:
    """The network and subnet of the last run; nothing (not an error) when the file is absent
    or unreadable, since it is only a hint for picking the same subnet again."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return PreviousSubnet(None, None)
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return PreviousSubnet(_net(values.get("FLANNEL_NETWORK")), _net(values.get("FLANNEL_SUBNET")))


def _net(text: str | None) -> ipaddress.IPv4Network | None:
    if not text:
        return None
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        return None
