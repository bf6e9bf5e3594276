"""Port-forward over WebSocket (kubelet's form: `v4.channel.k8s.io`, base64 and the
unversioned ones): the ports come from the CRI request (kubelet fills it from `?port=`), one
TCP connection per port, channel 2i carries its data and 2i+1 its errors, and each starts with
the port number as two little-endian bytes (CRI-CONTAINERS.md §4.2)."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading

from shim.streaming import negotiate
from shim.streaming.netns_dial import NetnsSocketFactory, dial
from shim.streaming.request_cache import PortForwardTarget
from shim.streaming.ws_channels import ChannelData, ChannelDecoder, ChannelError, encode
from shim.streaming.ws_link import PROTOCOL_ERROR, WebSocketLink

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024


def serve(
    ws: WebSocketLink,
    protocol: str,
    dialer: NetnsSocketFactory,
    target: PortForwardTarget,
) -> None:
    base64_text = negotiate.is_base64(protocol)
    if not target.ports:
        ws.send_message(encode(1, b"no port to forward: the request names none", base64_text))
        ws.close(PROTOCOL_ERROR, "no ports")
        return
    conns: dict[int, socket.socket] = {}
    pumps: list[threading.Thread] = []
    live = [len(target.ports)]
    live_lock = threading.Lock()

    def pump(index: int, sock: socket.socket) -> None:
        try:
            while data := sock.recv(READ_SIZE):
                try:
                    ws.send_message(encode(2 * index, data, base64_text))
                except OSError as err:
                    log.info("port-forward to %s: dropped the client: %s", target.sandbox_id, err)
                    ws.link.close()
                    break
        except OSError as err:
            log.debug("port-forward to %s: %s", target.sandbox_id, err)
        with live_lock:
            live[0] -= 1
            last = live[0] == 0
        if last:
            ws.close()

    try:
        for index, port in enumerate(target.ports):
            preamble = struct.pack("<H", port)
            ws.send_message(encode(2 * index, preamble, base64_text))
            ws.send_message(encode(2 * index + 1, preamble, base64_text))
        for index, port in enumerate(target.ports):
            try:
                conns[index] = dial(dialer, target.netns_path, port)
            except OSError as err:
                message = f"failed to forward port {port} of pod {target.sandbox_id}: {err}"
                ws.send_message(encode(2 * index + 1, message.encode(), base64_text))
                with live_lock:
                    live[0] -= 1
                continue
            thread = threading.Thread(
                target=pump, args=(index, conns[index]), name="ws-port-forward", daemon=True
            )
            thread.start()
            pumps.append(thread)
        if not conns:
            ws.close()
        decoder = ChannelDecoder(base64_text, close_signal=False)
        for fragment, finished in ws.fragments():
            for event in decoder.feed(fragment, finished):
                if isinstance(event, ChannelData) and event.channel % 2 == 0 and event.data:
                    sock = conns.get(event.channel // 2)
                    if sock is not None:
                        sock.sendall(event.data)
    except ChannelError as err:
        ws.close(PROTOCOL_ERROR, str(err)[:100])
    except OSError as err:
        log.debug("port-forward to %s ended: %s", target.sandbox_id, err)
    finally:
        for sock in conns.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in pumps:
            thread.join(timeout=10)
        for sock in conns.values():
            sock.close()
