"""Whether the Docker engine answers, as last seen by a background pinger.

Status is the call kubelet uses to decide whether the node is Ready. Asking Docker inside it
made Status as slow as the busiest moment of the engine (tens of milliseconds while pods start,
the full HTTP timeout when dockerd is wedged). A thread of its own pings every
PING_INTERVAL_S instead, and Status reads the latest verdict: at most that old when Docker
answers, and "no answer for N s" as soon as a ping has been pending longer than STALE_S, so a
hung engine is reported instead of hanging the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

PING_INTERVAL_S = 1.0
# A verdict older than this is not trusted: the ping in flight has not come back.
STALE_S = 3.0


class EngineHealth:
    """The owner of the pinger thread: `start()` once, `close()` on every exit path."""

    def __init__(
        self,
        ping: Callable[[], None],
        interval: float = PING_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping = ping
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._error: str | None = None
        self._checked_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="engine-health", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)

    def error(self) -> str | None:
        """None while Docker answers; otherwise why it is not ready. Without a running pinger
        (tests that build a context by hand), or before its first answer, the engine is
        asked right away."""
        with self._lock:
            never_asked = self._checked_at is None
        if self._thread is None or never_asked:
            self._check()
        with self._lock:
            error, checked_at = self._error, self._checked_at
        assert checked_at is not None  # _check always records a verdict
        age = self._clock() - checked_at
        if age > STALE_S:
            return f"the docker engine has not answered a ping for {age:.0f} s"
        return error

    def _run(self) -> None:
        self._check()
        while not self._stop.wait(self._interval):
            self._check()

    def _check(self) -> None:
        try:
            self._ping()
            error = None
        except Exception as err:  # any failure to answer is a verdict, not a crash
            error = str(err)
        with self._lock:
            if error != self._error:
                if error is None:
                    log.info("the docker engine answers again")
                else:
                    log.warning("the docker engine does not answer: %s", error)
            self._error = error
            self._checked_at = self._clock()
