"""host-local's reservations on disk, in the reference plugin's layout.

``<dataDir>/<network>/`` holds one file per reserved address, named by the address and holding
``<container id>\\r\\n<ifname>``; ``last_reserved_ip.<range set index>`` holds the address
handed out last (round-robin start); ``lock`` is taken with flock(2) around every change. Using
the same layout means a node can switch between this plugin and the reference binary without
losing or double-booking an address.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass

from cnilib.atomic import write_atomic
from netplugins.errors import ConfigError, IOFailure
from netplugins.statefiles import state_path

LINE_BREAK = "\r\n"
LAST_RESERVED_PREFIX = "last_reserved_ip."
LOCK_NAME = "lock"


@dataclass(frozen=True)
class Reservation:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    container_id: str
    ifname: str


class Store:
    """One network's reservation directory. Use as ``with store.locked(): ...``."""

    def __init__(self, data_dir: str, network: str) -> None:
        self.dir = state_path(data_dir, network, "network name", ConfigError)
        self._lock_fd: int | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[Store]:
        try:
            os.makedirs(self.dir, mode=0o755, exist_ok=True)
            fd = os.open(os.path.join(self.dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise IOFailure(f"failed to open ipam store {self.dir}", str(exc)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
            yield self
        finally:
            self._lock_fd = None
            os.close(fd)  # closing drops the flock

    def reserve(
        self,
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
        container_id: str,
        ifname: str,
        range_set: int,
    ) -> bool:
        """Create the address file exclusively; False when someone holds it already."""
        path = os.path.join(self.dir, str(ip))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise IOFailure(f"failed to reserve address {ip}", str(exc)) from exc
        try:
            # No fsync, like the reference: O_EXCL creation is the reservation, and after a
            # node crash every sandbox is gone anyway; an fsync costs tens of ms under I/O load.
            os.write(fd, f"{container_id.strip()}{LINE_BREAK}{ifname}".encode())
        finally:
            os.close(fd)
        self._write_last_reserved(range_set, ip)
        return True

    def _write_last_reserved(
        self, range_set: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> None:
        path = os.path.join(self.dir, f"{LAST_RESERVED_PREFIX}{range_set}")
        try:
            # Not durable, like the reference: a lost round-robin position after a power loss
            # only changes which free address comes next.
            write_atomic(path, str(ip).encode(), mode=0o644, durable=False)
        except OSError as exc:
            raise IOFailure(f"failed to record last reserved address {ip}", str(exc)) from exc

    def last_reserved(self, range_set: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        path = os.path.join(self.dir, f"{LAST_RESERVED_PREFIX}{range_set}")
        try:
            with open(path) as fh:
                return ipaddress.ip_address(fh.read().strip())
        except (OSError, ValueError):
            return None

    def reservations(self) -> list[Reservation]:
        out = []
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        for name in names:
            try:
                ip = ipaddress.ip_address(name)
            except ValueError:
                continue  # lock, last_reserved_ip.N, temp files
            try:
                # Binary read: text mode would turn the "\r\n" separator into "\n".
                with open(os.path.join(self.dir, name), "rb") as fh:
                    content = fh.read().decode(errors="replace")
            except FileNotFoundError:
                continue
            lines = content.strip().split(LINE_BREAK)
            # Files written by old reference versions hold only the container id.
            ifname = lines[1].strip() if len(lines) > 1 else ""
            out.append(Reservation(ip, lines[0].strip(), ifname))
        return out

    def held_by(self, container_id: str, ifname: str) -> list[Reservation]:
        return [
            r
            for r in self.reservations()
            if r.container_id == container_id and r.ifname in (ifname, "")
        ]

    def release(self, reservation: Reservation) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(self.dir, str(reservation.ip)))
