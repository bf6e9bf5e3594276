"""The backends that program the kernel for the peers' leases: VXLAN and host-gw.

Both follow one life cycle, driven by the daemon (CROSS-NODE.md section 8):
``prepare`` (create the device, return the attrs to publish) → the lease is acquired →
``configure`` (address, up, MAC check) → ``apply`` for every batch of peer changes, with the
full peer list after each snapshot so entries no lease backs are removed → ``check``
periodically, which restores a deleted device, address, neighbour, FDB entry or route.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from overlay.store.leases import Lease, LeaseAttrs
from overlay.watch import PeerChange


@dataclass(frozen=True)
class ExternalInterface:
    """The underlay interface: where VXLAN packets leave, or host-gw next hops live."""

    index: int
    name: str
    address: ipaddress.IPv4Address
    mtu: int
    public_ip: ipaddress.IPv4Address


class Backend(Protocol):
    type: str

    @property
    def mtu(self) -> int:
        """The MTU pods get (FLANNEL_MTU)."""
        ...

    async def prepare(self, previous: Lease | None) -> LeaseAttrs:
        """Create what must exist before the lease is published; ``previous`` is this node's
        lease of an earlier run, whose VTEP MAC is reused so peers' entries stay valid."""
        ...

    async def configure(self, lease: Lease) -> LeaseAttrs | None:
        """Finish the device for ``lease``; new attrs when they must be republished."""
        ...

    async def apply(self, changes: list[PeerChange], snapshot: list[Lease] | None) -> None:
        """Program the changes; with ``snapshot``, also remove entries no peer lease backs."""
        ...

    async def check(self) -> LeaseAttrs | None:
        """Restore what was deleted behind our back; new attrs when they must be republished."""
        ...
