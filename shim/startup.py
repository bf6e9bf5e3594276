"""Start-up in the background, so the socket serves at once.

The shim answers Version and Status from its first moment (Status honestly: RuntimeReady is
false until the state is back), while a thread waits for the Docker engine, rebuilds the
store from checkpoints and Docker, resumes the log followers, starts the event watcher, and
then runs CNI garbage collection. A Docker that is down when the shim starts only delays this;
it does not stop the shim.
"""

from __future__ import annotations

import logging
import threading

import requests

from shim.context import ShimContext
from shim.engine_watch import EngineWatcher
from shim.errors import ShimError
from shim.recovery import collect_garbage, recover

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.5
RETRY_MAX_S = 5.0


class StartUp:
    def __init__(self, ctx: ShimContext, watcher: EngineWatcher) -> None:
        self._ctx = ctx
        self._watcher = watcher
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="start-up", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._watcher.close()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        delay = RETRY_MIN_S
        warned = False
        while not self._stop.is_set():
            try:
                self._ctx.infra.ping()
                recover(self._ctx)
                break
            except (ShimError, requests.exceptions.RequestException, OSError) as err:
                if not warned:
                    log.warning("waiting for the Docker engine to recover state: %s", err)
                    warned = True
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        if self._stop.is_set():
            return
        self._ctx.recovered.set()
        self._watcher.start()
        log.info("state recovered; garbage-collecting CNI attachments of lost pods")
        try:
            collect_garbage(self._ctx)
        except Exception:  # GC is best effort: a failure must not keep pods from networks
            log.exception("start-up CNI garbage collection failed")
        finally:
            self._ctx.collected.set()
