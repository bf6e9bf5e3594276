"""Data types of the CNI runtime side: what goes into a call and what comes back.

`Result` is one typed view over every result shape from 0.3.0 to 1.1.0 (spec section
"Success"). The shapes differ only in details: 0.3.x/0.4.0 `ips[]` carry a `version`
field that 1.x dropped, and 1.1 added interface `mtu`/`socketPath`/`pciID` and route
`mtu`/`advmss`/`priority`/`table`/`scope`. Conversion therefore is lossless upwards and
drops only the 1.1 extras downwards.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cnilib.errors import DecodeError, VersionError
from cnilib.version import at_least, is_supported

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class RuntimeConf:
    """The per-attachment arguments of one call (libcni's RuntimeConf)."""

    container_id: str
    netns: str
    ifname: str
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class NetworkConfig:
    """One plugin of a list: its own JSON object and declared capabilities."""

    type: str
    raw: dict[str, Any]
    capabilities: Mapping[str, bool]


@dataclass
class NetworkConfigList:
    """A parsed network configuration list; `bytes` is what the cache stores."""

    name: str
    cni_version: str
    cni_versions: list[str]
    disable_check: bool
    disable_gc: bool
    plugins: list[NetworkConfig]
    raw: dict[str, Any]
    bytes: bytes
    source: str = ""


@dataclass(frozen=True)
class GCAttachment:
    """An attachment the runtime still uses (spec 1.1 GC, `cni.dev/valid-attachments`)."""

    container_id: str
    ifname: str

    def to_dict(self) -> dict[str, str]:
        # JSON names as in libcni's types.GCAttachment.
        return {"containerID": self.container_id, "ifname": self.ifname}


@dataclass(frozen=True)
class CachedAttachment:
    """One entry of the result cache, as GC and restart recovery need it."""

    container_id: str
    ifname: str
    network_name: str
    netns: str
    config: bytes
    args: tuple[tuple[str, str], ...]
    capability_args: Mapping[str, Any]


@dataclass
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int | None = None  # 1.1
    socket_path: str = ""  # 1.1
    pci_id: str = ""  # 1.1


@dataclass
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None


@dataclass
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int | None = None  # 1.1
    advmss: int | None = None  # 1.1
    priority: int | None = None  # 1.1
    table: int | None = None  # 1.1
    scope: int | None = None  # 1.1


@dataclass
class DNS:
    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


_ROUTE_EXTRAS = ("mtu", "advmss", "priority", "table", "scope")


@dataclass
class Result:
    """A CNI ADD result in a version-neutral form."""

    cni_version: str
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | bytes | str) -> Result:
        """Parse any 0.3.0..1.1.0 result; DecodeError quoting the input otherwise."""
        obj = _load_object(data)
        version = obj.get("cniVersion")
        if not isinstance(version, str) or not is_supported(version):
            raise VersionError(
                "failed to parse CNI result: unsupported cniVersion",
                f"cniVersion {version!r} in {_quote(data)}",
            )
        try:
            return cls(
                cni_version=version,
                interfaces=[_parse_interface(i) for i in _list(obj, "interfaces")],
                ips=[_parse_ip(i) for i in _list(obj, "ips")],
                routes=[_parse_route(r) for r in _list(obj, "routes")],
                dns=_parse_dns(obj.get("dns") or {}),
            )
        except (TypeError, ValueError, KeyError) as err:
            raise DecodeError("failed to parse CNI result", f"{err}: {_quote(data)}") from err

    def to_dict(self, version: str | None = None) -> dict[str, Any]:
        """The result in the JSON shape of `version` (default: its own)."""
        version = version or self.cni_version
        if not is_supported(version):
            raise VersionError(
                f"failed to convert CNI result to version {version}: unsupported version"
            )
        v11 = at_least(version, "1.1.0")
        ip_version_field = not at_least(version, "1.0.0")
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [_interface_dict(i, v11) for i in self.interfaces]
        if self.ips:
            out["ips"] = [_ip_dict(i, ip_version_field) for i in self.ips]
        if self.routes:
            out["routes"] = [_route_dict(r, v11) for r in self.routes]
        # Go's encoder never omits the dns struct, so neither do we (byte-level parity
        # with libcni output makes diffs against Go runtimes readable).
        out["dns"] = _dns_dict(self.dns)
        return out

    def to_json(self, version: str | None = None) -> bytes:
        return json.dumps(self.to_dict(version)).encode()


def _load_object(data: Mapping[str, Any] | bytes | str) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise DecodeError("failed to parse CNI result", f"{err}: {_quote(data)}") from err
    if not isinstance(obj, dict):
        raise DecodeError("failed to parse CNI result", f"not a JSON object: {_quote(data)}")
    return obj


def _quote(data: object, limit: int = 300) -> str:
    if isinstance(data, bytes):
        data = data.decode(errors="replace")
    text = data if isinstance(data, str) else json.dumps(data, default=str)
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise TypeError(f"{key!r} must be a list")
    return value


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string")
    return value


def _opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key!r} must be an integer")
    return value


def _parse_interface(obj: Any) -> Interface:
    if not isinstance(obj, dict):
        raise TypeError("interfaces[] entries must be objects")
    return Interface(
        name=_str(obj, "name"),
        mac=_str(obj, "mac"),
        sandbox=_str(obj, "sandbox"),
        mtu=_opt_int(obj, "mtu"),
        socket_path=_str(obj, "socketPath"),
        pci_id=_str(obj, "pciID"),
    )


def _parse_ip(obj: Any) -> IPConfig:
    if not isinstance(obj, dict):
        raise TypeError("ips[] entries must be objects")
    gateway = obj.get("gateway")
    return IPConfig(
        address=ipaddress.ip_interface(_str(obj, "address")),
        gateway=ipaddress.ip_address(gateway) if gateway else None,
        interface=_opt_int(obj, "interface"),
    )


def _parse_route(obj: Any) -> Route:
    if not isinstance(obj, dict):
        raise TypeError("routes[] entries must be objects")
    gw = obj.get("gw")
    return Route(
        dst=ipaddress.ip_network(_str(obj, "dst"), strict=False),
        gw=ipaddress.ip_address(gw) if gw else None,
        mtu=_opt_int(obj, "mtu"),
        advmss=_opt_int(obj, "advmss"),
        priority=_opt_int(obj, "priority"),
        table=_opt_int(obj, "table"),
        scope=_opt_int(obj, "scope"),
    )


def _str_list(obj: Mapping[str, Any], key: str) -> list[str]:
    values = _list(obj, key)
    if not all(isinstance(v, str) for v in values):
        raise TypeError(f"dns {key!r} must be a list of strings")
    return list(values)


def _parse_dns(obj: Any) -> DNS:
    if not isinstance(obj, dict):
        raise TypeError("'dns' must be an object")
    return DNS(
        nameservers=_str_list(obj, "nameservers"),
        domain=_str(obj, "domain"),
        search=_str_list(obj, "search"),
        options=_str_list(obj, "options"),
    )


def _interface_dict(iface: Interface, v11: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": iface.name}
    if iface.mac:
        out["mac"] = iface.mac
    if v11 and iface.mtu is not None:
        out["mtu"] = iface.mtu
    if iface.sandbox:
        out["sandbox"] = iface.sandbox
    if v11 and iface.socket_path:
        out["socketPath"] = iface.socket_path
    if v11 and iface.pci_id:
        out["pciID"] = iface.pci_id
    return out


def _ip_dict(ip: IPConfig, version_field: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if version_field:
        out["version"] = str(ip.address.version)
    if ip.interface is not None:
        out["interface"] = ip.interface
    out["address"] = str(ip.address)
    if ip.gateway is not None:
        out["gateway"] = str(ip.gateway)
    return out


def _route_dict(route: Route, v11: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": str(route.dst)}
    if route.gw is not None:
        out["gw"] = str(route.gw)
    if v11:
        for name in _ROUTE_EXTRAS:
            value = getattr(route, name)
            if value is not None:
                out[name] = value
    return out


def _dns_dict(dns: DNS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if dns.nameservers:
        out["nameservers"] = list(dns.nameservers)
    if dns.domain:
        out["domain"] = dns.domain
    if dns.search:
        out["search"] = list(dns.search)
    if dns.options:
        out["options"] = list(dns.options)
    return out
