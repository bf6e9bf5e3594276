"""The CRI view of a sandbox record, shared by PodSandboxStatus and ListPodSandbox."""

from __future__ import annotations

from cri_api import api_pb2
from shim.store.sandbox_record import SandboxRecord, SandboxState


def sandbox_state(record: SandboxRecord, running: bool) -> api_pb2.PodSandboxState.ValueType:
    if record.state is SandboxState.READY and running:
        return api_pb2.SANDBOX_READY
    return api_pb2.SANDBOX_NOTREADY


def sandbox_metadata(record: SandboxRecord) -> api_pb2.PodSandboxMetadata:
    return api_pb2.PodSandboxMetadata(
        name=record.name, namespace=record.namespace, uid=record.uid, attempt=record.attempt
    )
