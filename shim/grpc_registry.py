"""Registers a servicer for a whole service from its descriptor.

Every RPC the service defines gets a handler: the servicer's method of that name when it has
one, otherwise an UNIMPLEMENTED answer naming the RPC (clients such as kubelet and crictl fall
back on UNIMPLEMENTED for optional RPCs). Building from the descriptor also means the servicer
need not subclass the generated base class, whose 30-odd abstract methods we do not offer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from cri_api import api_pb2
from shim.grpc_errors import unimplemented


def service_handler(service_name: str, servicer: object) -> grpc.GenericRpcHandler[Any, Any]:
    service = api_pb2.DESCRIPTOR.services_by_name[service_name]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        request_type = getattr(api_pb2, method.input_type.name)
        response_type = getattr(api_pb2, method.output_type.name)
        impl: Callable[..., Any] | None = getattr(servicer, method.name, None)
        if impl is None:
            impl = unimplemented(service.full_name, method.name)
        if method.client_streaming:
            raise NotImplementedError(f"{method.full_name}: client streaming is not used by CRI")
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            impl,
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
