"""The gRPC server on a unix socket, with reflection and the standard health service."""

from __future__ import annotations

import logging
import os
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cri_api import api_pb2
from shim.context import ShimContext
from shim.grpc_registry import service_handler
from shim.metrics.grpc_interceptor import RpcMetricsInterceptor
from shim.servicer import ImageService, RuntimeService

log = logging.getLogger(__name__)

# kubelet issues many calls at once (ListPodSandbox every second, status per pod, parallel
# RunPodSandbox): more workers than servicer.LIFECYCLE_LIMIT, so that slow lifecycle calls
# can never occupy them all and the cheap calls always find one.
MAX_WORKERS = 96


def build_server(ctx: ShimContext, socket_path: str | None = None) -> grpc.Server:
    """The CRI server, listening on `socket_path` (the endpoint's, unless socket activation
    relays the endpoint to a private socket)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="rpc"),
        interceptors=[RpcMetricsInterceptor(ctx.metrics)],
    )
    server.add_generic_rpc_handlers(
        (
            service_handler("RuntimeService", RuntimeService(ctx)),
            service_handler("ImageService", ImageService(ctx)),
        )
    )

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = [s.full_name for s in api_pb2.DESCRIPTOR.services_by_name.values()]
    for name in ["", *services]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    reflection.enable_server_reflection(
        [
            *services,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    socket_path = socket_path or ctx.config.socket_path
    os.makedirs(os.path.dirname(socket_path) or ".", exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)  # a socket left by a killed shim would make the bind fail
    # The socket must never be reachable by other users, not even for a moment: create it
    # under a umask that yields mode 0660 instead of chmod'ing it afterwards.
    old_umask = os.umask(0o117)
    try:
        server.add_insecure_port(f"unix://{socket_path}")
        server.start()
    finally:
        os.umask(old_umask)
    log.info("serving CRI v1 on unix://%s", socket_path)
    return server
