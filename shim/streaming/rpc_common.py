"""What the three streaming RPCs share: their view of the shim, and the checks kubelet's
streaming library makes of every request (CRI-CONTAINERS.md §4.1)."""

from __future__ import annotations

from typing import Protocol

from shim.errors import FailedPreconditionError, InvalidArgumentError
from shim.store.container_record import ContainerRecord, ContainerState
from shim.store.container_store import ContainerStore
from shim.store.sandbox_store import SandboxStore
from shim.streaming.request_cache import RequestCache


class StreamingService(Protocol):
    """The running streaming server, as the RPCs use it."""

    @property
    def cache(self) -> RequestCache: ...

    def url(self, verb: str, token: str) -> str: ...


class StreamingContext(Protocol):
    """The part of `ShimContext` the streaming RPCs read."""

    @property
    def containers(self) -> ContainerStore: ...

    @property
    def store(self) -> SandboxStore: ...


def check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
    if not (stdin or stdout or stderr):
        raise InvalidArgumentError("one of stdin, stdout and stderr must be set")
    if tty and stderr:
        raise InvalidArgumentError(
            "tty and stderr cannot both be set: a terminal has one output stream"
        )


def running_container(ctx: StreamingContext, container_id: str) -> ContainerRecord:
    if not container_id:
        raise InvalidArgumentError("container_id is empty")
    record = ctx.containers.require(container_id)  # NOT_FOUND, unique prefixes
    if record.state is not ContainerState.RUNNING:
        raise FailedPreconditionError(
            f"container {record.id} is not running (state {record.state.value})"
        )
    return record
