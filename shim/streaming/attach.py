"""Attach: check the request, keep it under a one-time token, return the URL to stream it.
The client reaches the container's main process, whose stdin and TTY were set at create
(`shim.container.docker_config`: OpenStdin, StdinOnce, Tty)."""

from __future__ import annotations

from cri_api import api_pb2
from shim.streaming.request_cache import AttachTarget
from shim.streaming.rpc_common import (
    StreamingContext,
    StreamingService,
    check_streams,
    running_container,
)


def attach_url(
    ctx: StreamingContext, streaming: StreamingService, request: api_pb2.AttachRequest
) -> api_pb2.AttachResponse:
    check_streams(request.stdin, request.stdout, request.stderr, request.tty)
    record = running_container(ctx, request.container_id)
    target = AttachTarget(
        container_id=record.id,
        tty=request.tty,
        container_tty=record.spec.tty,
        stdin_once=record.spec.stdin_once,
        # Docker refuses stdin to a container created without it: leave it out instead.
        stdin=request.stdin and record.spec.stdin,
        stdout=request.stdout,
        stderr=request.stderr,
    )
    return api_pb2.AttachResponse(url=streaming.url("attach", streaming.cache.insert(target)))
