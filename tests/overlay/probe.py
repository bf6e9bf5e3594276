"""Traffic probes run inside a test namespace (`ip netns exec <ns> python -m tests.overlay.probe`).

The host has neither ping nor tcpdump nor iperf3, and the tests must see what the *receiver*
saw (the sender's address after any NAT), so each probe is a few lines of socket code: servers
print ``ready`` once bound, then one JSON line per thing they observed; clients print one JSON
line with what the server told them. Raw ICMP needs root, which the tests have.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import socket
import struct
import sys
import time
from typing import Any

IP_MTU_DISCOVER = 10  # <linux/in.h>; the socket module lacks it on some builds
IP_PMTUDISC_DO = 2  # set DF, never fragment locally
ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
IPV4_HEADER = 20
ICMP_HEADER = 8
UDP_HEADER = 8


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    checksum: int = ~total & 0xFFFF
    return checksum


def _echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    csum = _checksum(header + payload)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, csum, ident, seq) + payload


def _set_df(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)


def ping(args: argparse.Namespace) -> int:
    """ICMP echo: `--size` is the whole IP packet length, as the MTU tests reason in it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    if args.df:
        _set_df(sock)
    ident = os.getpid() & 0xFFFF
    payload = b"p" * max(0, args.size - IPV4_HEADER - ICMP_HEADER)
    sent = received = 0
    rtts: list[float] = []
    first_reply: float | None = None
    error = ""
    deadline = time.monotonic() + args.deadline if args.deadline else None
    seq = 0
    while args.count == 0 or seq < args.count:
        if deadline is not None and time.monotonic() > deadline:
            break
        seq += 1
        start = time.monotonic()
        try:
            sock.sendto(_echo_request(ident, seq & 0xFFFF, payload), (args.dst, 0))
            sent += 1
        except OSError as exc:
            error = errno.errorcode.get(exc.errno or 0, str(exc))
            if args.stop_on_reply:
                time.sleep(args.interval)
                continue
            break
        if _await_reply(sock, ident, seq & 0xFFFF, args.dst, start + args.timeout):
            received += 1
            rtts.append((time.monotonic() - start) * 1000)
            if first_reply is None:
                first_reply = time.time()
            if args.stop_on_reply:
                break
        pause = args.interval - (time.monotonic() - start)
        if pause > 0:
            time.sleep(pause)
    _emit(
        {
            "sent": sent,
            "received": received,
            "rtt_ms": rtts,
            "error": error,
            "first_reply": first_reply,
        }
    )
    return 0 if sent and received == sent else 1


def _await_reply(sock: socket.socket, ident: int, seq: int, dst: str, until: float) -> bool:
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return False
        packet, (source, _) = sock.recvfrom(65535)
        ihl = (packet[0] & 0x0F) * 4
        kind, _, _, got_ident, got_seq = struct.unpack("!BBHHH", packet[ihl : ihl + 8])
        if kind == ICMP_ECHO_REPLY and got_ident == ident and got_seq == seq and source == dst:
            return True


def icmp_listen(args: argparse.Namespace) -> int:
    """Print the source of each echo request the kernel (which answers it) lets us see."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    _emit({"ready": True})
    deadline = time.monotonic() + args.timeout
    seen = 0
    while time.monotonic() < deadline and seen < args.count:
        ready, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not ready:
            break
        packet, (source, _) = sock.recvfrom(65535)
        ihl = (packet[0] & 0x0F) * 4
        if packet[ihl] == ICMP_ECHO_REQUEST:
            seen += 1
            _emit({"source": source, "length": len(packet)})
    return 0 if seen else 1


def udp_server(args: argparse.Namespace) -> int:
    """Answer each datagram with the address it came from."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.bind, args.port))
    sock.settimeout(args.timeout)
    _emit({"ready": True})
    for _ in range(args.count):
        try:
            data, (source, port) = sock.recvfrom(65535)
        except TimeoutError:
            return 1
        _emit({"source": source, "length": len(data)})
        sock.sendto(source.encode(), (source, port))
    return 0


def udp_send(args: argparse.Namespace) -> int:
    """`--size` is the whole IP packet length (IP + UDP headers + payload)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if args.df:
        _set_df(sock)
    sock.settimeout(args.timeout)
    payload = b"u" * max(1, args.size - IPV4_HEADER - UDP_HEADER)
    try:
        sock.sendto(payload, (args.dst, args.port))
        reply, _ = sock.recvfrom(65535)
    except TimeoutError:
        _emit({"error": "timeout"})
        return 1
    except OSError as exc:
        _emit({"error": errno.errorcode.get(exc.errno or 0, str(exc))})
        return 1
    _emit({"seen_as": reply.decode()})
    return 0


def _tcp_listener(args: argparse.Namespace, backlog: int) -> socket.socket:
    """Listen on `--bind`:`port` with accept() timing out after `--timeout`; print ready."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.bind, args.port))
    sock.listen(backlog)
    sock.settimeout(args.timeout)
    _emit({"ready": True})
    return sock


def tcp_server(args: argparse.Namespace) -> int:
    """Tell each client the address it connected from."""
    sock = _tcp_listener(args, backlog=8)
    for _ in range(args.count):
        try:
            conn, (source, _) = sock.accept()
        except TimeoutError:
            return 1
        with conn:
            _emit({"source": source})
            conn.sendall(source.encode())
    return 0


def tcp_connect(args: argparse.Namespace) -> int:
    try:
        with socket.create_connection((args.dst, args.port), timeout=args.timeout) as conn:
            reply = conn.recv(256)
    except OSError as exc:
        _emit({"error": str(exc)})
        return 1
    _emit({"seen_as": reply.decode()})
    return 0


CHUNK = 256 * 1024


def tcp_sink(args: argparse.Namespace) -> int:
    """Count bytes of one connection; the throughput is measured on the receiving side."""
    sock = _tcp_listener(args, backlog=1)
    conn, _ = sock.accept()
    buf = bytearray(CHUNK)
    total = 0
    start = time.monotonic()
    with conn:
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            total += n
    seconds = time.monotonic() - start
    _emit({"bytes": total, "seconds": seconds, "gbit_s": total * 8 / seconds / 1e9})
    return 0


def tcp_source(args: argparse.Namespace) -> int:
    data = b"\0" * CHUNK
    with socket.create_connection((args.dst, args.port), timeout=args.timeout) as conn:
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            conn.sendall(data)
    _emit({"done": True})
    return 0


def udp_rtt(args: argparse.Namespace) -> int:
    """Round trips of small datagrams against `udp-server` (which answers each one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(args.timeout)
    rtts = []
    for _ in range(args.count):
        start = time.monotonic()
        sock.sendto(b"r", (args.dst, args.port))
        sock.recvfrom(256)
        rtts.append((time.monotonic() - start) * 1000)
    _emit({"rtt_ms": rtts})
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probe")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ping")
    p.add_argument("dst")
    p.add_argument("--count", type=int, default=1, help="0 = until --deadline")
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--timeout", type=float, default=1.0, help="per echo")
    p.add_argument("--deadline", type=float, default=0.0)
    p.add_argument("--size", type=int, default=84)
    p.add_argument("--df", action="store_true")
    p.add_argument("--stop-on-reply", action="store_true", help="retry until the first reply")
    p.set_defaults(func=ping)
    p = sub.add_parser("icmp-listen")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=icmp_listen)
    for name, func in (("udp-server", udp_server), ("tcp-server", tcp_server)):
        p = sub.add_parser(name)
        p.add_argument("port", type=int)
        p.add_argument("--bind", default="0.0.0.0")
        p.add_argument("--count", type=int, default=1)
        p.add_argument("--timeout", type=float, default=10.0)
        p.set_defaults(func=func)
    p = sub.add_parser("udp-send")
    p.add_argument("dst")
    p.add_argument("port", type=int)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--df", action="store_true")
    p.add_argument("--timeout", type=float, default=2.0)
    p.set_defaults(func=udp_send)
    p = sub.add_parser("tcp-connect")
    p.add_argument("dst")
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, default=3.0)
    p.set_defaults(func=tcp_connect)
    p = sub.add_parser("tcp-sink")
    p.add_argument("port", type=int)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=tcp_sink)
    p = sub.add_parser("tcp-source")
    p.add_argument("dst")
    p.add_argument("port", type=int)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=3.0)
    p.set_defaults(func=tcp_source)
    p = sub.add_parser("udp-rtt")
    p.add_argument("dst")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--timeout", type=float, default=2.0)
    p.set_defaults(func=udp_rtt)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
