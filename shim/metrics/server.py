"""Serving `/metrics` on `--metrics-address`, with prometheus_client's own HTTP server (a
threaded http.server in daemon threads, beside the gRPC server's pool, never in it)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from shim.metrics.address import split_address
from shim.metrics.collector import ContextSources, StateCollector
from shim.metrics.registry import ShimMetrics

if TYPE_CHECKING:
    from shim.context import ShimContext

log = logging.getLogger(__name__)


class MetricsServer:
    """The `/metrics` endpoint; `close()` is idempotent."""

    def __init__(self, address: str, metrics: ShimMetrics) -> None:
        host, port = split_address(address)
        self._server: WSGIServer | None
        self._thread: threading.Thread | None
        self._server, self._thread = start_http_server(port, host, registry=metrics.registry)
        log.info("serving metrics on http://%s/metrics", address)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def serve_metrics(ctx: ShimContext) -> MetricsServer | None:
    """Add the scrape-time gauges to the shim's registry and, when `--metrics-address` is
    set, serve it; OSError when that address cannot be bound."""
    ctx.metrics.registry.register(StateCollector(ContextSources(ctx)))
    if not ctx.config.metrics_address:
        return None
    return MetricsServer(ctx.config.metrics_address, ctx.metrics)
