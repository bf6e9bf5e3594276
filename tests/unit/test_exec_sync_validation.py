"""ExecSync's checks before anything reaches Docker: arguments, existence, state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from cri_api import api_pb2
from shim.container.exec_sync import exec_sync
from shim.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from shim.store.container_record import ContainerRecord, ContainerSpec, ContainerState
from shim.store.container_store import ContainerStore

CID = "a1" * 32


@dataclass
class FakeCtx:
    containers: ContainerStore = field(default_factory=ContainerStore)
    infra: Any = None  # never reached: every case fails before the exec


def _ctx(state: ContainerState) -> FakeCtx:
    ctx = FakeCtx()
    spec = ContainerSpec(
        sandbox_id="s" * 64, name="c", attempt=0, image="busybox", image_id="sha256:x", created_at=1
    )
    ctx.containers.put(ContainerRecord(id=CID, spec=spec, state=state))
    return ctx


@pytest.mark.parametrize(
    ("request_", "error", "words"),
    [
        (api_pb2.ExecSyncRequest(cmd=["true"]), InvalidArgumentError, "container_id"),
        (api_pb2.ExecSyncRequest(container_id=CID), InvalidArgumentError, "cmd"),
        (
            api_pb2.ExecSyncRequest(container_id=CID, cmd=["true"], timeout=-1),
            InvalidArgumentError,
            "timeout",
        ),
        (api_pb2.ExecSyncRequest(container_id="ffff", cmd=["true"]), NotFoundError, "ffff"),
    ],
)
def test_bad_requests(
    request_: api_pb2.ExecSyncRequest, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        exec_sync(_ctx(ContainerState.RUNNING), request_)


@pytest.mark.parametrize(
    "state", [ContainerState.CREATED, ContainerState.EXITED, ContainerState.UNKNOWN]
)
def test_container_not_running(state: ContainerState) -> None:
    request = api_pb2.ExecSyncRequest(container_id=CID[:12], cmd=["true"])
    with pytest.raises(FailedPreconditionError, match=f"container {CID} is not running"):
        exec_sync(_ctx(state), request)
