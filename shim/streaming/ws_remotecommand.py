"""Exec and attach over WebSocket: `channel.k8s.io`, `base64.channel.k8s.io`,
`v4.channel.k8s.io`, `v4.base64.channel.k8s.io` and `v5.channel.k8s.io` (CRI-CONTAINERS.md
§4.2). Runs in the connection's thread until the client or the session ends."""

from __future__ import annotations

import logging

import docker

from shim.engine.stdcopy import Stream
from shim.streaming import negotiate
from shim.streaming.remotecommand import RemoteCommandSession, ResizeDecoder
from shim.streaming.request_cache import AttachTarget, ExecTarget
from shim.streaming.ws_channels import (
    ERROR,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    ChannelClosed,
    ChannelData,
    ChannelDecoder,
    ChannelError,
    encode,
)
from shim.streaming.ws_link import INTERNAL_ERROR, PROTOCOL_ERROR, WebSocketLink

log = logging.getLogger(__name__)


class _ChannelOutput:
    def __init__(self, ws: WebSocketLink, base64_text: bool) -> None:
        self._ws = ws
        self._base64 = base64_text

    def write(self, stream: Stream, data: bytes) -> None:
        channel = STDERR if stream is Stream.STDERR else STDOUT
        self._ws.send_message(encode(channel, data, self._base64))

    def finish(self, error_payload: bytes) -> None:
        if error_payload:
            self._ws.send_message(encode(ERROR, error_payload, self._base64))
        self._ws.close()

    def drop(self) -> None:
        self._ws.link.close()


def serve(
    ws: WebSocketLink,
    protocol: str,
    client: docker.APIClient,
    target: ExecTarget | AttachTarget,
) -> None:
    base64_text = negotiate.is_base64(protocol)
    output = _ChannelOutput(ws, base64_text)
    # The first message tells the client the streams are ready: an empty one on the lowest
    # channel it reads (kubelet's library does the same).
    ready = STDOUT if target.stdout else STDERR if target.stderr else ERROR
    ws.send_message(encode(ready, b"", base64_text))
    session = RemoteCommandSession(client, target, output, negotiate.structured_status(protocol))
    session.start()
    decoder = ChannelDecoder(base64_text, close_signal=protocol == negotiate.V5)
    resize = ResizeDecoder()
    try:
        for fragment, finished in ws.fragments():
            for event in decoder.feed(fragment, finished):
                if isinstance(event, ChannelClosed):
                    if event.channel == STDIN:
                        session.stdin_eof()
                elif isinstance(event, ChannelData):
                    if event.channel == STDIN:
                        session.stdin(event.data)
                    elif event.channel == RESIZE:
                        for width, height in resize.feed(event.data, event.message_end):
                            session.resize(width, height)
    except (ChannelError, ValueError) as err:
        log.info("websocket %s in %s: closed: %s", protocol, target.container_id, err)
        ws.close(PROTOCOL_ERROR, str(err)[:100])
    except OSError as err:
        log.debug("websocket %s in %s: connection failed: %s", protocol, target.container_id, err)
        ws.close(INTERNAL_ERROR)
    finally:
        session.abort()
