"""An in-memory `KVStore` for the overlay daemon's unit tests: etcd's revisions, leases,
conditional writes, compaction and watches, without a server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from overlay.store.kv import CompactedError, KeyValue, StoreUnavailableError, WatchEvent


@dataclass
class FakeKV:
    revision: int = 1
    data: dict[str, KeyValue] = field(default_factory=dict)
    leases: dict[int, int] = field(default_factory=dict)  # id -> ttl
    history: list[WatchEvent] = field(default_factory=list)
    compacted: int = 0
    next_lease: int = 0x1000
    down: bool = False
    revoked: list[int] = field(default_factory=list)
    # create() calls wait here when set, so tests can line up racing acquisitions.
    create_gate: asyncio.Event | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailableError("fake store is down")

    async def _write(self, key: str, value: bytes, lease: int) -> int:
        if lease and lease not in self.leases:
            raise StoreUnavailableError(f"lease {lease:x} not found")
        self.revision += 1
        prev = self.data.get(key)
        kv = KeyValue(
            key=key,
            value=value,
            create_revision=prev.create_revision if prev else self.revision,
            mod_revision=self.revision,
            version=(prev.version + 1) if prev else 1,
            lease=lease,
        )
        self.data[key] = kv
        self.history.append(WatchEvent("PUT", kv, prev))
        await self._notify()
        return self.revision

    async def _remove(self, key: str) -> None:
        prev = self.data.pop(key)
        self.revision += 1
        self.history.append(WatchEvent("DELETE", KeyValue(key, b"", 0, self.revision, 0, 0), prev))
        await self._notify()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def get(self, key: str) -> KeyValue | None:
        self._check()
        return self.data.get(key)

    async def list_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        self._check()
        return [kv for k, kv in sorted(self.data.items()) if k.startswith(prefix)], self.revision

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        self._check()
        return await self._write(key, value, lease)

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> bool:
        self._check()
        if self.create_gate is not None:
            await self.create_gate.wait()
        if key in self.data:
            return False
        await self._write(key, value, lease)
        return True

    async def replace(self, key: str, value: bytes, *, lease: int, mod_revision: int) -> bool:
        self._check()
        kv = self.data.get(key)
        if kv is None or kv.mod_revision != mod_revision:
            return False
        await self._write(key, value, lease)
        return True

    async def delete(self, key: str) -> bool:
        self._check()
        if key not in self.data:
            return False
        await self._remove(key)
        return True

    async def grant(self, ttl: int) -> tuple[int, int]:
        self._check()
        self.next_lease += 1
        self.leases[self.next_lease] = ttl
        return self.next_lease, ttl

    async def revoke(self, lease: int) -> None:
        self._check()
        self.revoked.append(lease)
        self.leases.pop(lease, None)
        for key in [k for k, kv in self.data.items() if kv.lease == lease]:
            await self._remove(key)

    async def time_to_live(self, lease: int) -> int:
        self._check()
        return self.leases.get(lease, -1)

    def compact(self) -> None:
        self.compacted = self.revision
        self.history = [e for e in self.history if e.kv.mod_revision > self.compacted]

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        self._check()
        if start_revision <= self.compacted:
            raise CompactedError("required revision has been compacted", self.compacted)
        seen = start_revision - 1
        while True:
            self._check()
            batch = [
                e for e in self.history if e.kv.mod_revision > seen and e.kv.key.startswith(prefix)
            ]
            if batch:
                seen = batch[-1].kv.mod_revision
                yield batch
                continue
            async with self.changed:
                await self.changed.wait()

    async def aclose(self) -> None:
        return None
