"""Where a pod start went: RunPodSandbox marks the end of each step, and the time since the
previous mark is that step's duration (so waits between steps, a GC still running or a lock
held, are counted in the step that waited, and the steps add up to the whole call)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class StepTimer:
    def __init__(
        self,
        on_step: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._on_step = on_step
        self._last = clock()
        self.steps: list[tuple[str, float]] = []

    def mark(self, step: str) -> float:
        """End `step` now; its duration in seconds."""
        now = self._clock()
        seconds = max(0.0, now - self._last)
        self._last = now
        self.steps.append((step, seconds))
        if self._on_step is not None:
            self._on_step(step, seconds)
        return seconds

    def as_json(self) -> list[dict[str, Any]]:
        """The checkpoint's and verbose status's form; durations to the microsecond."""
        return [{"step": step, "seconds": round(seconds, 6)} for step, seconds in self.steps]
