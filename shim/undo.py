"""Undo steps for a multi-step operation (RunPodSandbox).

Each step that acquires something registers its undo right after it succeeds. On failure the
undos run in reverse order; one that fails is logged and recorded, and the rest still run, so
the caller can tell whether everything was given back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack

log = logging.getLogger(__name__)


class UndoStack:
    def __init__(self, subject: str) -> None:
        self._subject = subject
        self._stack = ExitStack()
        self.failures: list[str] = []

    def push(self, what: str, undo: Callable[[], None]) -> None:
        self._stack.callback(self._guarded, what, undo)

    def commit(self) -> None:
        """The operation succeeded: keep everything it acquired."""
        self._stack.pop_all()

    def rollback(self) -> list[str]:
        """Run every undo, newest first; return what could not be undone."""
        self._stack.close()
        return self.failures

    def _guarded(self, what: str, undo: Callable[[], None]) -> None:
        try:
            undo()
        except Exception as err:  # every undo must get its turn, whatever the one before did
            log.error("%s: failed to %s: %s", self._subject, what, err)
            self.failures.append(f"{what}: {err}")
