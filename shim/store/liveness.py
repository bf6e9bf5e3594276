"""Which infra containers are running, without asking Docker on every ListPodSandbox."""

from __future__ import annotations

import threading


class InfraLiveness:
    """Which infra containers run, kept by the watcher and by the sandbox verbs themselves
    (so a ListPodSandbox right after RunPodSandbox never waits for the event). `synced` is
    False while the event stream is down: readers then ask Docker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self.synced = False

    def mark(self, sandbox_id: str, running: bool) -> None:
        with self._lock:
            if running:
                self._running.add(sandbox_id)
            else:
                self._running.discard(sandbox_id)

    def reset(self, running: set[str]) -> None:
        with self._lock:
            self._running = set(running)

    def running(self) -> set[str] | None:
        with self._lock:
            return set(self._running) if self.synced else None
