"""The key-value store the daemon needs, independent of etcd: data types, errors, protocol.

The shape follows etcd's v3 model (revisions, leases with a TTL, a watch that resumes from a
revision) because flannel's lease layout is defined on it (CROSS-NODE.md §1); another store
implements the same protocol by mapping its own versions onto revisions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class KeyValue:
    """One key as the store holds it at `mod_revision`.

    `lease` is 0 when the key has no lease (a flannel reservation, CROSS-NODE.md §1). A deleted
    key seen in a watch event has only `key` and `mod_revision` set (value b"", the rest 0).
    """

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True)
class WatchEvent:
    """A change of one key; `prev_kv` is the key before the change when the store knows it."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None


class StoreError(Exception):
    """Base of every error a store raises."""


class StoreUnavailableError(StoreError):
    """No endpoint answered in time (or the answer was cut off); callers retry with back-off."""


class CompactedError(StoreError):
    """A watch asked for a revision the store has compacted away: the caller must list again.

    `compact_revision` is the oldest revision the store still has.
    """

    def __init__(self, message: str, compact_revision: int) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class KVStore(Protocol):
    """The operations the daemon's lease logic uses; `EtcdClient` is the real one."""

    async def get(self, key: str) -> KeyValue | None:
        """The key, or None when absent."""
        ...

    async def list_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under `prefix` and the store revision the list was taken at."""
        ...

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write the key (attached to `lease`, 0 = none); returns the new revision."""
        ...

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> bool:
        """Write the key only if it does not exist; False when it does."""
        ...

    async def replace(self, key: str, value: bytes, *, lease: int, mod_revision: int) -> bool:
        """Write the key only if it is still at `mod_revision`; False when it changed."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove the key; False when it was already absent."""
        ...

    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease of `ttl` seconds: (lease id, TTL granted)."""
        ...

    async def revoke(self, lease: int) -> None:
        """End the lease and delete its keys; a lease already gone is not an error."""
        ...

    async def time_to_live(self, lease: int) -> int:
        """Seconds the lease has left, -1 when it is gone (or `lease` is 0)."""
        ...

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        """Batches of changes under `prefix` from `start_revision` on, in revision order.

        Raises CompactedError when `start_revision` is compacted and StoreUnavailableError
        when the stream is lost; the caller then resumes from its last revision + 1.
        Implementations are async generators: a caller that stops early calls `aclose()`
        (`contextlib.aclosing`) so the stream is released at once.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and end open watches; idempotent."""
        ...
