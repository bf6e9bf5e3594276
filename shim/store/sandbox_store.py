"""The sandboxes the shim knows: an in-memory index over one checkpoint file per sandbox.

Every change is written through to `<root>/sandboxes/<id>.json` before the call returns, so a
shim killed at any point restarts knowing every sandbox it may have left resources for.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from cnilib.atomic import remove_file, write_atomic
from cnilib.locks import KeyedLocks
from shim.errors import NotFoundError
from shim.store.ids import resolve_prefix
from shim.store.sandbox_record import SandboxRecord

log = logging.getLogger(__name__)


class SandboxStore:
    def __init__(self, root_directory: str) -> None:
        self._dir = os.path.join(root_directory, "sandboxes")
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        self._records: dict[str, SandboxRecord] = {}
        self._guard = threading.Lock()
        # One lock per sandbox id and per pod identity: calls for different pods run in
        # parallel, calls for the same pod queue up (kubelet does send duplicates).
        self._locks = KeyedLocks()

    def load(self) -> list[SandboxRecord]:
        """Read every checkpoint; a corrupt one is logged and kept on disk for a person."""
        loaded = []
        for entry in sorted(os.listdir(self._dir)):
            if not entry.endswith(".json") or entry.startswith("."):
                continue
            path = os.path.join(self._dir, entry)
            try:
                with open(path, "rb") as f:
                    record = SandboxRecord.from_json(f.read())
            except (OSError, ValueError, TypeError, KeyError) as err:
                log.error("skipping unreadable sandbox checkpoint %s: %s", path, err)
                continue
            loaded.append(record)
        with self._guard:
            for record in loaded:
                self._records[record.id] = record
        return loaded

    def save(self, record: SandboxRecord) -> None:
        write_atomic(self._path(record.id), record.to_json())
        with self._guard:
            self._records[record.id] = record

    def delete(self, sandbox_id: str) -> None:
        remove_file(self._path(sandbox_id))
        with self._guard:
            self._records.pop(sandbox_id, None)

    def get(self, sandbox_id: str) -> SandboxRecord | None:
        with self._guard:
            return self._records.get(sandbox_id)

    def all(self) -> list[SandboxRecord]:
        with self._guard:
            return list(self._records.values())

    def find_by_name_key(self, key: str) -> SandboxRecord | None:
        with self._guard:
            for record in self._records.values():
                if record.name_key == key:
                    return record
        return None

    def resolve(self, id_or_prefix: str) -> str:
        """The full id for an id or a unique prefix of one."""
        with self._guard:
            ids = list(self._records)
        return resolve_prefix(ids, id_or_prefix, "pod sandbox")

    @contextmanager
    def locked_record(self, id_or_prefix: str) -> Iterator[SandboxRecord | None]:
        """The sandbox's record with its lock held, or None when there is no such sandbox
        (Stop and Remove succeed for those: both are idempotent)."""
        try:
            full_id = self.resolve(id_or_prefix)
        except NotFoundError:
            yield None
            return
        with self.locked(full_id):
            yield self.get(full_id)  # None if removed while we waited for the lock

    @contextmanager
    def locked(self, key: str) -> Iterator[None]:
        with self._locks.hold(key):
            yield

    def _path(self, sandbox_id: str) -> str:
        return os.path.join(self._dir, f"{sandbox_id}.json")
