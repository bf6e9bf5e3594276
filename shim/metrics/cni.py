"""CNI plugin timings, taken at the one place every plugin call passes: the executor.

The shim hands cnilib a `PluginExecutor`; wrapping it here measures each invocation (ADD,
DEL, CHECK, GC, STATUS, VERSION) by plugin type and command without cnilib knowing about
metrics (cnilib must not depend on the shim)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from cnilib.invoke import PluginExecutor
from shim.metrics.registry import ShimMetrics


class ObservedExecutor:
    """A PluginExecutor that times the one it wraps."""

    def __init__(self, inner: PluginExecutor, metrics: ShimMetrics) -> None:
        self.inner = inner
        self._metrics = metrics

    def run(
        self, path: str, env: Mapping[str, str], stdin: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]:
        labels = (os.path.basename(path), env.get("CNI_COMMAND", "?"))
        start = time.perf_counter()
        try:
            answer = self.inner.run(path, env, stdin, timeout)
        except Exception:  # a timeout, an unexecutable binary: cnilib reports it
            self._metrics.cni_errors.labels(*labels).inc()
            raise
        finally:
            self._metrics.cni_duration.labels(*labels).observe(time.perf_counter() - start)
        if answer[0] != 0:
            self._metrics.cni_errors.labels(*labels).inc()
        return answer
