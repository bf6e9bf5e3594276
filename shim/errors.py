"""The shim's exception hierarchy. Each class carries the gRPC status code it maps to, so the
servicer's single decorator can turn any of them into the right status without a lookup table."""

from __future__ import annotations

import grpc


class ShimError(Exception):
    """Base of every error the shim raises on purpose; unexpected ones become INTERNAL."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgumentError(ShimError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(ShimError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(ShimError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(ShimError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class UnavailableError(ShimError):
    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhaustedError(ShimError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class CancelledError(ShimError):
    """The caller gave up: nothing more is acquired for it."""

    code = grpc.StatusCode.CANCELLED


class DeadlineError(ShimError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class InfraRuntimeError(ShimError):
    """The Docker engine refused or failed an operation on an infra container or image."""

    code = grpc.StatusCode.UNKNOWN


class ImageNotPresentError(InfraRuntimeError):
    """The engine has no such image: the caller may pull it and try again."""


class NameConflictError(InfraRuntimeError):
    """Docker already has a container of that name (a create that timed out after Docker
    made it, or a retried CreateContainer)."""

    code = grpc.StatusCode.ALREADY_EXISTS


class NetworkSetupError(ShimError):
    """A CNI operation failed; the message carries the plugin's CNI code, msg and details."""

    code = grpc.StatusCode.UNKNOWN
