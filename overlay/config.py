"""The network config flanneld reads from ``<prefix>/config`` (CROSS-NODE.md section 1).

Go's JSON decoder matches field names case-insensitively, so ``{"network": ...}`` is as good
as ``{"Network": ...}``; we fold keys the same way. Defaults and limits follow flannel's
``pkg/subnet/config.go`` except where flannel is wrong: a missing Backend means VXLAN (flannel's
code says "udp", its docs vxlan, and udp is gone), and IPv6 is refused with a clear error
instead of half-supported.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from overlay.errors import ConfigError

BACKEND_VXLAN = "vxlan"
BACKEND_HOST_GW = "host-gw"
BACKEND_TYPES = (BACKEND_VXLAN, BACKEND_HOST_GW)

# The kernel's own default VXLAN port (vxlan module param udp_port) is 8472, flannel's too;
# we always pass it explicitly so a node with another module default still interoperates.
DEFAULT_VXLAN_PORT = 8472
MAX_VNI = (1 << 24) - 1

# flannel: a network must hold at least four subnets, a subnet at least four addresses.
MAX_NETWORK_PREFIX = 28
MAX_SUBNET_LEN = 30


@dataclass(frozen=True)
class BackendConfig:
    type: str = BACKEND_VXLAN
    vni: int = 1
    port: int = DEFAULT_VXLAN_PORT
    mtu: int = 0  # 0: the external interface's MTU
    gbp: bool = False
    learning: bool = False
    direct_routing: bool = False


@dataclass(frozen=True)
class NetworkConfig:
    network: ipaddress.IPv4Network
    subnet_len: int
    subnet_min: ipaddress.IPv4Network
    subnet_max: ipaddress.IPv4Network
    backend: BackendConfig

    def subnet_count(self) -> int:
        """How many subnets lie between SubnetMin and SubnetMax, both included."""
        step = 1 << (32 - self.subnet_len)
        return (
            int(self.subnet_max.network_address) - int(self.subnet_min.network_address)
        ) // step + 1

    def subnet_at(self, index: int) -> ipaddress.IPv4Network:
        """The ``index``-th subnet counted from SubnetMin."""
        step = 1 << (32 - self.subnet_len)
        first = int(self.subnet_min.network_address)
        return ipaddress.IPv4Network((first + index * step, self.subnet_len))

    def allows(self, subnet: ipaddress.IPv4Network) -> bool:
        """Whether a lease for ``subnet`` fits this config (flannel's isSubnetConfigCompat)."""
        return (
            subnet.prefixlen == self.subnet_len
            and self.subnet_min.network_address <= subnet.network_address
            and subnet.network_address <= self.subnet_max.network_address
        )


def _fold(obj: dict[str, Any], where: str) -> dict[str, Any]:
    folded: dict[str, Any] = {}
    for key, value in obj.items():
        low = key.lower()
        if low in folded:
            raise ConfigError(
                f"invalid network config: {where} has key {key!r} twice (keys ignore case)"
            )
        folded[low] = value
    return folded


def _int(obj: dict[str, Any], key: str, name: str, default: int, lo: int, hi: int) -> int:
    value = obj.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"invalid network config: {name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"invalid network config: {name} {value} is out of range {lo}..{hi}")
    return value


def _bool(obj: dict[str, Any], key: str, name: str) -> bool:
    value = obj.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigError(f"invalid network config: {name} must be true or false, got {value!r}")
    return value


def _str(obj: dict[str, Any], key: str, name: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"invalid network config: {name} must be a string, got {value!r}")
    return value


def parse_backend(raw: Any) -> BackendConfig:
    if raw is None:
        return BackendConfig()
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid network config: Backend must be an object, got {raw!r}")
    obj = _fold(raw, "Backend")
    kind = (_str(obj, "type", "Backend.Type") or BACKEND_VXLAN).lower()
    if kind not in BACKEND_TYPES:
        raise ConfigError(
            f"invalid network config: Backend.Type {kind!r} is not supported "
            f"(supported: {', '.join(BACKEND_TYPES)})"
        )
    if kind == BACKEND_HOST_GW:
        return BackendConfig(type=kind, port=0)
    port = _int(obj, "port", "Backend.Port", 0, 0, 65535)
    return BackendConfig(
        type=kind,
        vni=_int(obj, "vni", "Backend.VNI", 1, 0, MAX_VNI),
        port=port or DEFAULT_VXLAN_PORT,
        mtu=_int(obj, "mtu", "Backend.MTU", 0, 0, 65535),
        gbp=_bool(obj, "gbp", "Backend.GBP"),
        learning=_bool(obj, "learning", "Backend.Learning"),
        direct_routing=_bool(obj, "directrouting", "Backend.DirectRouting"),
    )


def _aligned_subnet(
    obj: dict[str, Any], key: str, name: str, network: ipaddress.IPv4Network, subnet_len: int
) -> ipaddress.IPv4Network | None:
    text = _str(obj, key, name)
    if text is None:
        return None
    try:
        address = ipaddress.IPv4Address(text.split("/", 1)[0])
    except ValueError as exc:
        raise ConfigError(
            f"invalid network config: {name} {text!r} is not an IPv4 address"
        ) from exc
    if address not in network:
        raise ConfigError(
            f"invalid network config: {name} {address} is not inside Network {network}"
        )
    try:
        return ipaddress.IPv4Network((address, subnet_len))
    except ValueError as exc:
        raise ConfigError(
            f"invalid network config: {name} {address} is not aligned to SubnetLen {subnet_len}"
        ) from exc


def parse_config(raw: bytes | str) -> NetworkConfig:
    """Parse and validate the JSON at ``<prefix>/config``; every error names the field."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid network config: not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError("invalid network config: must be a JSON object")
    obj = _fold(doc, "config")
    if _bool(obj, "enableipv6", "EnableIPv6"):
        raise ConfigError("invalid network config: EnableIPv6 is not supported by pyflanneld")
    if "enableipv4" in obj and not _bool(obj, "enableipv4", "EnableIPv4"):
        raise ConfigError("invalid network config: EnableIPv4 false is not supported by pyflanneld")
    text = _str(obj, "network", "Network")
    if text is None:
        raise ConfigError("invalid network config: Network is missing")
    try:
        network = ipaddress.IPv4Network(text)
    except ValueError as exc:
        raise ConfigError(
            f"invalid network config: Network {text!r} is not an IPv4 CIDR: {exc}"
        ) from exc
    if network.prefixlen > MAX_NETWORK_PREFIX:
        raise ConfigError(
            f"invalid network config: Network {network} is too small (/{network.prefixlen}); "
            f"it must be /{MAX_NETWORK_PREFIX} or larger"
        )
    default_len = 24 if network.prefixlen <= 22 else network.prefixlen + 2
    subnet_len = _int(obj, "subnetlen", "SubnetLen", default_len, 0, 32) or default_len
    if subnet_len > MAX_SUBNET_LEN:
        raise ConfigError(
            f"invalid network config: SubnetLen {subnet_len} is too long; at most {MAX_SUBNET_LEN}"
        )
    if subnet_len < network.prefixlen + 2:
        raise ConfigError(
            f"invalid network config: SubnetLen {subnet_len} leaves fewer than four subnets in "
            f"Network {network}; it must be at least {network.prefixlen + 2}"
        )
    step = 1 << (32 - subnet_len)
    first = int(network.network_address)
    subnet_min = _aligned_subnet(obj, "subnetmin", "SubnetMin", network, subnet_len)
    subnet_max = _aligned_subnet(obj, "subnetmax", "SubnetMax", network, subnet_len)
    # The first subnet (e.g. 10.244.0.0/24) is never handed out by default, as in flannel.
    subnet_min = subnet_min or ipaddress.IPv4Network((first + step, subnet_len))
    subnet_max = subnet_max or ipaddress.IPv4Network(
        (int(network.broadcast_address) + 1 - step, subnet_len)
    )
    if subnet_min.network_address > subnet_max.network_address:
        raise ConfigError(
            f"invalid network config: SubnetMin {subnet_min.network_address} is above "
            f"SubnetMax {subnet_max.network_address}"
        )
    return NetworkConfig(
        network=network,
        subnet_len=subnet_len,
        subnet_min=subnet_min,
        subnet_max=subnet_max,
        backend=parse_backend(obj.get("backend")),
    )
