"""Per-RPC latency and error counts, as a gRPC server interceptor (every service: the CRI's
two, health and reflection alike).

A unary call is timed from the moment its handler runs to its answer, whatever the outcome;
its status is read back from the servicer context (`context.abort` sets it before raising).
A server stream (GetContainerEvents) lives for as long as its subscriber, so it is not timed:
only a status other than OK at its end is counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from shim.metrics.registry import ShimMetrics

if TYPE_CHECKING:  # grpc's stubs make these generic; at run time they are plain classes
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.ServerInterceptor


def split_method(full_method: str) -> tuple[str, str]:
    """`/runtime.v1.RuntimeService/Version` → (`runtime.v1.RuntimeService`, `Version`)."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method or full_method


def _code_name(context: grpc.ServicerContext, failed: bool) -> str:
    # Set by abort() / set_code(); None when the handler said nothing. (The stubs lack it.)
    code = getattr(context, "code", lambda: None)()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN" if failed else "OK"


class RpcMetricsInterceptor(_Interceptor):
    def __init__(self, metrics: ShimMetrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, method = split_method(handler_call_details.method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._timed(handler.unary_unary, service, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._counted_stream(handler.unary_stream, service, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client streaming: no CRI RPC uses it

    def _timed(
        self, behaviour: Callable[[Any, grpc.ServicerContext], Any], service: str, method: str
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        duration = self._metrics.grpc_duration.labels(service, method)
        errors = self._metrics.grpc_errors

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            failed = True
            try:
                answer = behaviour(request, context)
                failed = False
                return answer
            finally:
                duration.observe(time.perf_counter() - start)
                code = _code_name(context, failed)
                if code != "OK":
                    errors.labels(service, method, code).inc()

        return call

    def _counted_stream(
        self,
        behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
        service: str,
        method: str,
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        errors = self._metrics.grpc_errors

        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            failed = True
            try:
                yield from behaviour(request, context)
                failed = False
            except GeneratorExit:  # the client went away: not the server's error
                failed = False
                raise
            finally:
                code = _code_name(context, failed)
                if code not in ("OK", "CANCELLED"):
                    errors.labels(service, method, code).inc()

        return stream
