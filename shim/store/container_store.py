"""The containers the shim knows, in memory: ListContainers and kubelet's relist every second
are answered from here, never by a `docker ps` per call. Docker's events keep it current (a
container that dies on its own is seen without anyone asking)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from cnilib.locks import KeyedLocks
from shim.errors import NotFoundError
from shim.store.container_record import ContainerRecord
from shim.store.ids import resolve_prefix


class ContainerStore:
    def __init__(self) -> None:
        self._records: dict[str, ContainerRecord] = {}
        self._guard = threading.Lock()
        # One lock per container: Start/Stop/Remove of one container queue up, others run.
        self._locks = KeyedLocks()

    def put(self, record: ContainerRecord) -> None:
        with self._guard:
            self._records[record.id] = record

    def drop(self, container_id: str) -> None:
        with self._guard:
            self._records.pop(container_id, None)

    def get(self, container_id: str) -> ContainerRecord | None:
        with self._guard:
            return self._records.get(container_id)

    def all(self) -> list[ContainerRecord]:
        with self._guard:
            return list(self._records.values())

    def of_sandbox(self, sandbox_id: str) -> list[ContainerRecord]:
        with self._guard:
            return [r for r in self._records.values() if r.sandbox_id == sandbox_id]

    def resolve(self, id_or_prefix: str) -> str:
        with self._guard:
            ids = list(self._records)
        return resolve_prefix(ids, id_or_prefix, "container")

    def require(self, id_or_prefix: str) -> ContainerRecord:
        record = self.get(self.resolve(id_or_prefix))
        if record is None:  # removed between the two look-ups
            raise NotFoundError(f"container {id_or_prefix!r} not found")
        return record

    @contextmanager
    def locked_record(self, id_or_prefix: str) -> Iterator[ContainerRecord | None]:
        """The record with its lock held, or None when there is no such container (Stop and
        Remove succeed for those: both are idempotent)."""
        try:
            full_id = self.resolve(id_or_prefix)
        except NotFoundError:
            yield None
            return
        with self._locks.hold(full_id):
            yield self.get(full_id)

    @contextmanager
    def locked(self, container_id: str) -> Iterator[None]:
        with self._locks.hold(container_id):
            yield
