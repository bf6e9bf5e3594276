"""What the verbs and the Docker watcher call when a container or sandbox changes state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shim.events.hub import Change, EventType

if TYPE_CHECKING:
    from shim.context import ShimContext


def container_changed(
    ctx: ShimContext, container_id: str, sandbox_id: str, event_type: EventType
) -> None:
    ctx.events.report(Change(container_id, sandbox_id, event_type, ctx.store.get(sandbox_id)))


def sandbox_changed(ctx: ShimContext, sandbox_id: str, event_type: EventType) -> None:
    """containerd's convention, which kubelet relies on: a sandbox's event carries the
    sandbox id as its container id (a DELETED one tells kubelet to forget the pod)."""
    ctx.events.report(Change(sandbox_id, sandbox_id, event_type, ctx.store.get(sandbox_id)))
