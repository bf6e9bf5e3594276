"""Exec: check the request, keep it under a one-time token, return the URL to stream it.
The command starts when the client connects (`remotecommand`, `docker_stream.start_exec`)."""

from __future__ import annotations

from cri_api import api_pb2
from shim.errors import InvalidArgumentError
from shim.streaming.request_cache import ExecTarget
from shim.streaming.rpc_common import (
    StreamingContext,
    StreamingService,
    check_streams,
    running_container,
)


def exec_url(
    ctx: StreamingContext, streaming: StreamingService, request: api_pb2.ExecRequest
) -> api_pb2.ExecResponse:
    if not request.cmd:
        raise InvalidArgumentError("cmd is empty")
    check_streams(request.stdin, request.stdout, request.stderr, request.tty)
    record = running_container(ctx, request.container_id)
    target = ExecTarget(
        container_id=record.id,
        cmd=tuple(request.cmd),
        tty=request.tty,
        stdin=request.stdin,
        stdout=request.stdout,
        stderr=request.stderr,
    )
    return api_pb2.ExecResponse(url=streaming.url("exec", streaming.cache.insert(target)))
