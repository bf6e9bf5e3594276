"""Which interface carries the overlay, and which address the node publishes (flanneld's
``--iface``, ``--iface-regex``, ``--iface-can-reach``, ``--public-ip``; pkg/ipmatch).

Without any of them the interface of the default route is used, as flanneld does; a node
namespace without a default route must name its interface (CROSS-NODE.md section 6).
"""

from __future__ import annotations

import ipaddress
import re

from overlay.backend import ExternalInterface
from overlay.backend.kernel import AF_INET, Kernel, Link
from overlay.errors import ConfigError


async def _first_address(kernel: Kernel, link: Link) -> ipaddress.IPv4Address | None:
    addresses = await kernel.addresses(link.index)
    return addresses[0].ip if addresses else None


async def _by_name_or_ip(kernel: Kernel, spec: str) -> tuple[Link, ipaddress.IPv4Address] | None:
    try:
        wanted_ip: ipaddress.IPv4Address | None = ipaddress.IPv4Address(spec)
    except ValueError:
        wanted_ip = None
    for link in await kernel.links():
        if wanted_ip is None:
            if link.name == spec:
                address = await _first_address(kernel, link)
                if address is None:
                    raise ConfigError(f"failed to use interface {spec}: it has no IPv4 address")
                return link, address
        elif wanted_ip in [a.ip for a in await kernel.addresses(link.index)]:
            return link, wanted_ip
    return None


async def _default_route_link(kernel: Kernel) -> Link | None:
    async for msg in await kernel.ipr.route("dump", family=AF_INET, table=254):
        if int(msg["dst_len"]) == 0 and msg.get("RTA_OIF"):
            return await kernel.link_by_index(int(msg.get("RTA_OIF")))
    return None


async def find_external_interface(
    kernel: Kernel,
    ifaces: list[str],
    iface_regex: list[str],
    can_reach: str | None,
    public_ip: str | None,
) -> ExternalInterface:
    found: tuple[Link, ipaddress.IPv4Address] | None = None
    for spec in ifaces:
        found = await _by_name_or_ip(kernel, spec)
        if found is not None:
            break
    if found is None and ifaces:
        raise ConfigError(f"failed to find any interface named by --iface {', '.join(ifaces)}")
    if found is None and iface_regex:
        patterns = []
        for text in iface_regex:
            try:
                patterns.append(re.compile(text))
            except re.error as exc:
                raise ConfigError(f"invalid --iface-regex {text!r}: {exc}") from exc
        for link in await kernel.links():
            if link.name == "lo":
                continue
            address = await _first_address(kernel, link)
            if address is None:
                continue
            if any(p.search(link.name) or p.search(str(address)) for p in patterns):
                found = (link, address)
                break
        if found is None:
            raise ConfigError(f"failed to find an interface matching --iface-regex {iface_regex}")
    if found is None and can_reach:
        try:
            target = ipaddress.IPv4Address(can_reach)
        except ValueError as exc:
            raise ConfigError(
                f"invalid --iface-can-reach {can_reach!r}: not an IPv4 address"
            ) from exc
        route = await kernel.route_to(target)
        reaching = await kernel.link_by_index(route.oif) if route is not None else None
        address = await _first_address(kernel, reaching) if reaching is not None else None
        if reaching is None or address is None:
            raise ConfigError(f"failed to find an interface that reaches {can_reach}")
        found = (reaching, address)
    if found is None:
        default = await _default_route_link(kernel)
        address = await _first_address(kernel, default) if default is not None else None
        if default is None or address is None:
            raise ConfigError(
                "failed to find the external interface: no default route; name one with --iface"
            )
        found = (default, address)
    link, address = found
    try:
        published = ipaddress.IPv4Address(public_ip) if public_ip else address
    except ValueError as exc:
        raise ConfigError(f"invalid --public-ip {public_ip!r}: not an IPv4 address") from exc
    return ExternalInterface(
        index=link.index, name=link.name, address=address, mtu=link.mtu, public_ip=published
    )
