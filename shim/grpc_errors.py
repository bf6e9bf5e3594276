"""One decorator turns the shim's exceptions into gRPC statuses for every RPC."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc
import requests

from shim.errors import ShimError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def maps_errors(method: F) -> F:
    rpc = method.__name__

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            gate = getattr(self, "gate", None)
            if gate is None:
                return method(self, request, context)
            with gate(rpc, context):
                return method(self, request, context)
        except ShimError as err:
            message = bounded(str(err))
            log.warning("%s failed: %s", rpc, message)
            abort(context, err.code, message)
        except requests.exceptions.RequestException as err:
            # Refused, reset or timed out on Docker's socket: the engine is away, not our bug.
            log.warning("%s failed: the Docker engine does not answer: %s", rpc, err)
            abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"{rpc} failed: the Docker engine does not answer: {err}",
            )
        except Exception as err:
            # context.abort raises to end the RPC: let that through untouched.
            if isinstance(err, grpc.RpcError) or type(err).__name__ == "_AbortError":
                raise
            log.exception("%s failed unexpectedly", rpc)
            abort(context, grpc.StatusCode.INTERNAL, bounded(f"{rpc} failed: {err}"))

    return wrapper  # type: ignore[return-value]


# A status message (and its log line) carries a plugin's error text: bounded, so a plugin
# that floods its output cannot push a message past the client's limits or fill the log.
MAX_MESSAGE = 16 * 1024


def bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:MAX_MESSAGE]}… ({len(message) - MAX_MESSAGE} more characters cut)"


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


def unimplemented(service: str, rpc: str) -> Callable[..., Any]:
    """A handler for an RPC cri-shim does not offer, naming itself (kubelet accepts
    UNIMPLEMENTED for optional RPCs such as RuntimeConfig and the Stream* lists)."""

    def handler(request: Any, context: grpc.ServicerContext) -> NoReturn:
        abort(
            context,
            grpc.StatusCode.UNIMPLEMENTED,
            f"{service}/{rpc} is not implemented by cri-shim",
        )

    handler.__name__ = rpc
    return handler
