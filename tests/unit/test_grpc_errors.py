"""The one decorator that maps exceptions to gRPC statuses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
import requests

from shim.errors import NotFoundError, UnavailableError
from shim.grpc_errors import maps_errors


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted

    def time_remaining(self) -> float:
        return 10.0


class Service:
    def __init__(self, error: Exception, gate_error: Exception | None = None) -> None:
        self.error = error
        self.gate_error = gate_error

    @contextmanager
    def gate(self, rpc: str, context: Any) -> Iterator[None]:
        if self.gate_error is not None:
            raise self.gate_error
        yield

    @maps_errors
    def ListImages(self, request: Any, context: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "code", "needle"),
    [
        (NotFoundError("image x not found"), grpc.StatusCode.NOT_FOUND, "image x not found"),
        (
            requests.exceptions.ConnectionError("Connection aborted"),
            grpc.StatusCode.UNAVAILABLE,
            "ListImages failed: the Docker engine does not answer: Connection aborted",
        ),
        (requests.exceptions.ReadTimeout("read timed out"), grpc.StatusCode.UNAVAILABLE, "Docker"),
        (RuntimeError("boom"), grpc.StatusCode.INTERNAL, "ListImages failed: boom"),
    ],
)
def test_mapping(error: Exception, code: grpc.StatusCode, needle: str) -> None:
    context = FakeContext()
    with pytest.raises(Aborted):
        Service(error).ListImages(None, context)
    assert context.code == code
    assert needle in context.details


def test_gate_runs_first() -> None:
    context = FakeContext()
    with pytest.raises(Aborted):
        Service(RuntimeError("not reached"), UnavailableError("recovering")).ListImages(
            None, context
        )
    assert (context.code, context.details) == (grpc.StatusCode.UNAVAILABLE, "recovering")


def test_long_messages_are_cut() -> None:
    context = FakeContext()
    with pytest.raises(Aborted):
        Service(NotFoundError("x" * 1_000_000)).ListImages(None, context)
    assert len(context.details) < 17 * 1024
    assert context.details.endswith("more characters cut)")
