"""GetContainerEvents: the server stream kubelet's Evented PLEG follows (shim.events.hub
builds the events; this is one subscriber's side of it).

A stream holds one of the gRPC server's threads for as long as it lasts and nothing else: it
takes no lifecycle slot, does not wait for start-up recovery (events of a shim still
recovering are simply not there yet; a stream refused for that would count against kubelet's
five retries before it falls back to relisting), and the hub admits few subscribers
(hub.MAX_SUBSCRIBERS), so streams can never starve the other RPCs of threads.

A subscriber that falls behind is dropped: its stream ends with RESOURCE_EXHAUSTED. If its
thread is stuck in a send the client does not read (HTTP/2 flow control), the call is
cancelled from outside after a short grace, which frees the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import grpc

from cri_api import api_pb2
from shim.context import ShimContext
from shim.events.broadcaster import SubscriberOverflowError, TooManySubscribersError
from shim.grpc_errors import abort

log = logging.getLogger(__name__)

# How long a dropped subscriber's thread may take to notice on its own before its call is
# cancelled (it is then blocked in a send nobody reads).
STUCK_SEND_GRACE_S = 1.0


def get_container_events(
    ctx: ShimContext, context: grpc.ServicerContext
) -> Iterator[api_pb2.ContainerEventResponse]:
    try:
        subscription = ctx.events.subscribe()
    except TooManySubscribersError as err:
        abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, f"GetContainerEvents: {err}")
    # The client's cancel, its going away or the server's shutdown frees the slot at once.
    context.add_callback(subscription.close)
    reading = threading.Event()  # set while this thread waits for the next event

    def cancel_if_stuck() -> None:
        if not reading.is_set() and context.is_active():
            log.warning("GetContainerEvents: a dropped subscriber does not read; cancelling")
            context.cancel()  # type: ignore[no-untyped-call]

    def on_overflow() -> None:
        timer = threading.Timer(STUCK_SEND_GRACE_S, cancel_if_stuck)
        timer.daemon = True
        timer.start()

    subscription.on_overflow = on_overflow
    log.info("GetContainerEvents: subscriber connected (%d now)", ctx.events.subscribers())
    try:
        while True:
            reading.set()
            try:
                event = subscription.get(timeout=None)
            finally:
                reading.clear()
            if event is None:  # closed: the client went away or the shim stops
                return
            yield event
    except SubscriberOverflowError as err:
        abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, f"GetContainerEvents: {err}")
    finally:
        subscription.close()
        log.info("GetContainerEvents: subscriber gone (%d left)", ctx.events.subscribers())
