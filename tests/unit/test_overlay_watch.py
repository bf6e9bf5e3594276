"""The peer view: snapshot diff, watch events, removal with cached attrs, compaction relist."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random

import pytest

from overlay.config import parse_config
from overlay.errors import LeaseRevoked
from overlay.store.leases import EtcdSubnetManager, Lease, LeaseAttrs, LeaseEvent
from overlay.watch import LeaseCache, LeaseWatcher, PeerChange
from tests.overlay_fake_kv import FakeKV

NET = ipaddress.IPv4Network
PREFIX = "/coreos.com/network"


def _lease(n: int, mac: str = "02:00:00:00:00:00") -> Lease:
    attrs = LeaseAttrs(ipaddress.IPv4Address(f"192.0.2.{n}"), "vxlan", {"VNI": 1, "VtepMAC": mac})
    return Lease(NET(f"10.244.{n}.0/24"), attrs)


def _kinds(changes: list[PeerChange]) -> list[tuple[str, str]]:
    return sorted((c.kind, str(c.lease.subnet)) for c in changes)


def test_reset_diffs_and_skips_own_subnet() -> None:
    cache = LeaseCache(_lease(1))
    assert _kinds(cache.reset([_lease(1), _lease(2), _lease(3)])) == [
        ("added", "10.244.2.0/24"),
        ("added", "10.244.3.0/24"),
    ]
    # Same snapshot again: nothing changes. A renewal with the same attrs is not a change.
    assert cache.reset([_lease(1), _lease(2), _lease(3)]) == []
    changes = cache.reset([_lease(1), _lease(3, "02:00:00:00:00:33")])
    assert _kinds(changes) == [("added", "10.244.3.0/24"), ("removed", "10.244.2.0/24")]
    moved = next(c for c in changes if c.kind == "added")
    assert moved.previous is not None and moved.previous.attrs.backend_data == {
        "VNI": 1,
        "VtepMAC": "02:00:00:00:00:00",
    }


def test_removed_event_carries_the_cached_attrs() -> None:
    cache = LeaseCache(_lease(1))
    cache.reset([_lease(1), _lease(2)])
    changes = cache.apply([LeaseEvent("removed", NET("10.244.2.0/24"))])
    assert len(changes) == 1 and changes[0].lease == _lease(2)
    # An unknown subnet's delete is nothing to do.
    assert cache.apply([LeaseEvent("removed", NET("10.244.9.0/24"))]) == []


def test_own_lease_gone_or_taken_is_revoked() -> None:
    cache = LeaseCache(_lease(1))
    with pytest.raises(LeaseRevoked):
        cache.reset([_lease(2)])
    cache = LeaseCache(_lease(1))
    cache.reset([_lease(1)])
    with pytest.raises(LeaseRevoked):
        cache.apply([LeaseEvent("removed", NET("10.244.1.0/24"))])
    thief = Lease(NET("10.244.1.0/24"), LeaseAttrs(ipaddress.IPv4Address("192.0.2.77"), "vxlan"))
    with pytest.raises(LeaseRevoked, match="taken over"):
        cache.apply([LeaseEvent("added", thief.subnet, thief)])


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[list[PeerChange], list[Lease] | None]] = []
        self.event = asyncio.Event()

    async def __call__(self, changes: list[PeerChange], snapshot: list[Lease] | None) -> None:
        self.batches.append((changes, snapshot))
        self.event.set()

    async def wait(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.batches) < count:
                self.event.clear()
                await self.event.wait()


async def _setup() -> tuple[FakeKV, EtcdSubnetManager, Lease]:
    kv = FakeKV()
    manager = EtcdSubnetManager(kv, PREFIX, rng=random.Random(5))
    cfg = parse_config(json.dumps({"Network": "10.244.0.0/16"}))
    own = await manager.acquire_lease(cfg, _lease(1).attrs, None)
    return kv, manager, own


def _peer_key(n: int) -> str:
    return f"{PREFIX}/subnets/10.244.{200 + n}.0-24"


def _peer_value(n: int) -> bytes:
    return _lease(n).attrs.to_json()


def test_watcher_snapshot_then_events_then_compaction_relist() -> None:
    async def run() -> None:
        kv, manager, own = await _setup()
        await kv.put(_peer_key(2), _peer_value(2))
        sink = Recorder()
        watcher = LeaseWatcher(manager, LeaseCache(own), sink)
        task = asyncio.create_task(watcher.run())
        try:
            await sink.wait(1)
            changes, snapshot = sink.batches[0]
            assert _kinds(changes) == [("added", "10.244.202.0/24")]
            assert snapshot is not None and [x.subnet for x in snapshot] == [NET("10.244.202.0/24")]

            await kv.put(_peer_key(3), _peer_value(3))
            await sink.wait(2)
            assert _kinds(sink.batches[1][0]) == [("added", "10.244.203.0/24")]
            assert sink.batches[1][1] is None

            await kv.delete(_peer_key(2))
            await sink.wait(3)
            removed = sink.batches[2][0]
            assert _kinds(removed) == [("removed", "10.244.202.0/24")]
            assert removed[0].lease.attrs.public_ip == ipaddress.IPv4Address("192.0.2.2")

            # The store goes down, events happen, history is compacted: the watcher retries,
            # gets CompactedError on resume, lists again and converges.
            kv.down = True
            await kv._notify()
            await asyncio.sleep(0.3)
            kv.down = False
            await kv.delete(_peer_key(3))
            await kv.put(_peer_key(4), _peer_value(4))
            kv.compact()
            await sink.wait(4)
            changes, snapshot = sink.batches[3]
            assert _kinds(changes) == [("added", "10.244.204.0/24"), ("removed", "10.244.203.0/24")]
            assert snapshot is not None and [x.subnet for x in snapshot] == [NET("10.244.204.0/24")]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run())


def test_watcher_raises_when_own_lease_is_deleted() -> None:
    async def run() -> None:
        kv, manager, own = await _setup()
        sink = Recorder()
        watcher = LeaseWatcher(manager, LeaseCache(own), sink)
        task = asyncio.create_task(watcher.run())
        await sink.wait(1)
        await kv.delete(own.key)
        async with asyncio.timeout(5):
            with pytest.raises(LeaseRevoked):
                await task

    asyncio.run(run())


def test_periodic_resync_heals_a_missed_event() -> None:
    async def run() -> None:
        kv, manager, own = await _setup()
        sink = Recorder()
        watcher = LeaseWatcher(manager, LeaseCache(own), sink, resync_interval=0.2)
        task = asyncio.create_task(watcher.run())
        try:
            await sink.wait(1)
            # A peer the watch never reports (written behind its back, no history).
            await kv.put(_peer_key(5), _peer_value(5))
            kv.history.clear()
            async with asyncio.timeout(5):
                while not any(_kinds(b[0]) == [("added", "10.244.205.0/24")] for b in sink.batches):
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run())
