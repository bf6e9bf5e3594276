"""Undo steps for a multi-step operation (RunPodSandbox).

Each step that acquires something registers its undo right after it succeeds. On failure the
undos run in reverse order; one that fails is logged and recorded, and the rest still run, so
the caller can tell whether everything was given back — except after a failed undo marked
`keeps_earlier`: what was acquired before it is what a retry needs (a failed CNI DEL must be
retried with the namespace still pinned and the container still there), so it is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UndoFailure:
    step: str
    error: str

    def __str__(self) -> str:
        return f"{self.step}: {self.error}"


class UndoStack:
    def __init__(self, subject: str) -> None:
        self._subject = subject
        self._stack = ExitStack()
        self.failures: list[UndoFailure] = []
        self.kept: list[str] = []  # undos not run because a later step's undo failed
        self._halted = False

    def push(self, step: str, undo: Callable[[], None], keeps_earlier: bool = False) -> None:
        self._stack.callback(self._guarded, step, undo, keeps_earlier)

    def commit(self) -> None:
        """The operation succeeded: keep everything it acquired."""
        self._stack.pop_all()

    def rollback(self) -> list[UndoFailure]:
        """Run every undo, newest first; return what could not be undone."""
        self._stack.close()
        return self.failures

    def failed(self, step: str) -> bool:
        return any(f.step == step for f in self.failures)

    def _guarded(self, step: str, undo: Callable[[], None], keeps_earlier: bool) -> None:
        if self._halted:
            self.kept.append(step)
            return
        try:
            undo()
        except Exception as err:  # every undo must get its turn, whatever the one before did
            log.error("%s: failed to %s: %s", self._subject, step, err)
            self.failures.append(UndoFailure(step, str(err)))
            if keeps_earlier:
                self._halted = True
