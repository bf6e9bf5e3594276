"""The view of the other nodes' leases: a snapshot, then a watch, then a snapshot again.

`LeaseCache` is pure: it turns snapshots and watch events into peer changes, skipping our own
subnet, and gives a removal the attrs it had (a store's delete carries no value, and without
the VtepMAC and PublicIP a backend cannot find what to remove). `LeaseWatcher` drives it:
list, watch from revision + 1, resume after a lost stream with back-off (100 ms to 5 s, as
flannel), list again after a compaction, and, unlike flannel, list again every 10 minutes so
a missed event heals (CROSS-NODE.md section 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from overlay.errors import LeaseRevoked
from overlay.store.kv import CompactedError, StoreError
from overlay.store.leases import Lease, LeaseEvent, SubnetManager

log = logging.getLogger(__name__)

RESYNC_INTERVAL = 600.0
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0


@dataclass(frozen=True)
class PeerChange:
    """A peer appeared or changed ("added", with the lease it replaced if any) or left."""

    kind: Literal["added", "removed"]
    lease: Lease
    previous: Lease | None = None


class LeaseCache:
    """The other nodes' leases by subnet, and our own subnet, which must stay leased."""

    def __init__(self, own: Lease) -> None:
        self.own = own
        self.peers: dict[ipaddress.IPv4Network, Lease] = {}

    def _check_own(self, lease: Lease) -> None:
        if lease.attrs.public_ip != self.own.attrs.public_ip:
            raise LeaseRevoked(f"lease {self.own.subnet} was taken over by {lease.attrs.public_ip}")

    def _put(self, lease: Lease) -> PeerChange | None:
        previous = self.peers.get(lease.subnet)
        self.peers[lease.subnet] = lease
        if previous is not None and previous.attrs == lease.attrs:
            return None  # a renewal: same node, same attrs, nothing for the kernel
        return PeerChange("added", lease, previous)

    def reset(self, leases: list[Lease]) -> list[PeerChange]:
        """Diff a full snapshot against the cache (flannel's LeaseWatcher.Reset)."""
        seen: dict[ipaddress.IPv4Network, Lease] = {}
        own_seen = False
        for lease in leases:
            if lease.subnet == self.own.subnet:
                self._check_own(lease)
                own_seen = True
            elif lease.subnet.overlaps(self.own.subnet):
                log.warning(
                    "ignoring lease %s: it overlaps our subnet %s", lease.subnet, self.own.subnet
                )
            else:
                seen[lease.subnet] = lease
        if not own_seen:
            raise LeaseRevoked(f"lease {self.own.subnet} is gone from the store")
        changes = [
            PeerChange("removed", old) for subnet, old in self.peers.items() if subnet not in seen
        ]
        for subnet in [s for s in self.peers if s not in seen]:
            del self.peers[subnet]
        for lease in seen.values():
            change = self._put(lease)
            if change is not None:
                changes.append(change)
        return changes

    def apply(self, events: list[LeaseEvent]) -> list[PeerChange]:
        changes = []
        for event in events:
            if event.subnet == self.own.subnet:
                if event.type == "removed":
                    raise LeaseRevoked(f"lease {self.own.subnet} is gone from the store")
                assert event.lease is not None
                self._check_own(event.lease)
                continue
            if event.type == "removed":
                old = self.peers.pop(event.subnet, None)
                if old is not None:
                    changes.append(PeerChange("removed", old))
                continue
            assert event.lease is not None
            if event.lease.subnet.overlaps(self.own.subnet):
                continue
            change = self._put(event.lease)
            if change is not None:
                changes.append(change)
        return changes

    def current(self) -> list[Lease]:
        return list(self.peers.values())


# (changes, snapshot): snapshot is every current peer after a relist, None after a watch batch.
Sink = Callable[[list[PeerChange], list[Lease] | None], Awaitable[None]]


class LeaseWatcher:
    def __init__(
        self,
        manager: SubnetManager,
        cache: LeaseCache,
        sink: Sink,
        resync_interval: float = RESYNC_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.manager = manager
        self.cache = cache
        self.sink = sink
        self.resync_interval = resync_interval
        self.clock = clock
        self.revision = 0
        self.backoff = BACKOFF_MIN
        self.synced = asyncio.Event()

    async def _sleep_backoff(self, what: str, exc: Exception) -> None:
        log.warning("%s: %s; retrying in %.1fs", what, exc, self.backoff)
        await asyncio.sleep(self.backoff)
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    async def relist(self) -> None:
        """Take a snapshot (retrying while the store is down) and hand the diff to the sink."""
        while True:
            try:
                leases, revision = await self.manager.list_leases()
                break
            except StoreError as exc:
                await self._sleep_backoff("failed to list leases", exc)
        self.backoff = BACKOFF_MIN
        changes = self.cache.reset(leases)
        self.revision = revision
        await self.sink(changes, self.cache.current())
        self.synced.set()

    async def _follow(self, deadline: float) -> None:
        """Apply watch batches until ``deadline`` (then the caller relists)."""
        stream: AsyncIterator[tuple[list[LeaseEvent], int]] = self.manager.watch_leases(
            self.revision + 1
        )
        async with _closing(stream), asyncio.timeout(max(0.0, deadline - self.clock())):
            async for events, revision in stream:
                self.backoff = BACKOFF_MIN
                changes = self.cache.apply(events)
                self.revision = max(self.revision, revision)
                if changes:
                    await self.sink(changes, None)

    async def run(self) -> None:
        """Forever; raises LeaseRevoked when our own lease is gone."""
        await self.relist()
        next_resync = self.clock() + self.resync_interval
        while True:
            if self.clock() >= next_resync:
                await self.relist()
                next_resync = self.clock() + self.resync_interval
            try:
                await self._follow(next_resync)
            except TimeoutError:
                continue
            except CompactedError as exc:
                log.warning(
                    "watch revision %d was compacted (%s); listing again", self.revision + 1, exc
                )
                await self.relist()
            except StoreError as exc:
                await self._sleep_backoff(f"lease watch lost at revision {self.revision}", exc)
            else:
                # The stream ended without an error (a closed connection): resume, not spin.
                await self._sleep_backoff("lease watch ended", StoreError("stream closed"))


@contextlib.asynccontextmanager
async def _closing(stream: Any) -> AsyncIterator[None]:
    """Close an async generator on the way out (a cancelled ``async for`` does not)."""
    try:
        yield
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
