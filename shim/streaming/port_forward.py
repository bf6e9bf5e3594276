"""PortForward: check the sandbox, keep where to dial under a one-time token, return the URL.
The connections are made when the client asks for them (`netns_dial`): inside the sandbox's
pinned network namespace, or on the host for a host-network sandbox."""

from __future__ import annotations

from cri_api import api_pb2
from shim.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from shim.sandbox.netns_pin import is_pinned
from shim.store.sandbox_record import SandboxState
from shim.streaming.request_cache import PortForwardTarget
from shim.streaming.rpc_common import StreamingContext, StreamingService


def port_forward_url(
    ctx: StreamingContext, streaming: StreamingService, request: api_pb2.PortForwardRequest
) -> api_pb2.PortForwardResponse:
    if not request.pod_sandbox_id:
        raise InvalidArgumentError("pod_sandbox_id is empty")
    for port in request.port:
        if not 0 < port <= 65535:
            raise InvalidArgumentError(f"port {port} is not a valid TCP port")
    full_id = ctx.store.resolve(request.pod_sandbox_id)  # NOT_FOUND, unique prefixes
    record = ctx.store.get(full_id)
    if record is None:
        raise NotFoundError(f"pod sandbox {request.pod_sandbox_id!r} not found")
    if record.state is not SandboxState.READY:
        raise FailedPreconditionError(f"pod sandbox {record.id} is not ready")
    netns_path = ""
    if not record.host_network:
        if not record.netns_path or not is_pinned(record.netns_path):
            raise FailedPreconditionError(
                f"pod sandbox {record.id} has no network namespace to forward ports into"
            )
        netns_path = record.netns_path
    target = PortForwardTarget(
        sandbox_id=record.id, netns_path=netns_path, ports=tuple(request.port)
    )
    return api_pb2.PortForwardResponse(
        url=streaming.url("portforward", streaming.cache.insert(target))
    )
