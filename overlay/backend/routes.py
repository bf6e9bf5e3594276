"""Desired-state bookkeeping for the routes a backend owns (tagged with our proto number)."""

from __future__ import annotations

import ipaddress
import logging

from overlay.backend.kernel import Kernel, Route

log = logging.getLogger(__name__)


async def sync_routes(
    kernel: Kernel, wanted: dict[ipaddress.IPv4Network, Route], remove_unknown: bool
) -> None:
    """Make the kernel's routes with our proto match ``wanted``: add what is missing or
    different; with ``remove_unknown``, delete our routes for subnets nobody wants."""
    present = {route.dst: route for route in await kernel.our_routes()}
    for dst, route in wanted.items():
        if present.get(dst) != route:
            if dst in present:
                log.info("route %s is %s, want %s: replacing", dst, present[dst], route)
            await kernel.replace_route(route)
    if remove_unknown:
        for dst in present.keys() - wanted.keys():
            log.info("removing route %s: no lease backs it", dst)
            await kernel.delete_route(dst)
