"""The one-time tokens behind the URLs that Exec, Attach and PortForward return.

The RPC (a gRPC thread) stores the validated request and gets a token; the streaming server
(its own threads) takes it out again when the client connects. This cache is the single
hand-off between the two concurrency worlds, guarded by one lock. Contract (CRI-CONTAINERS.md
§4.1): random tokens, single use, a minute to live, a bounded number in flight.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from shim.errors import ResourceExhaustedError

TOKEN_TTL = 60.0
MAX_IN_FLIGHT = 1000
# 6 random bytes are 8 URL-safe base64 characters, the length kubelet's library uses.
TOKEN_BYTES = 6


@dataclass(frozen=True)
class ExecTarget:
    """A validated Exec request: what the connection will run."""

    container_id: str
    cmd: tuple[str, ...]
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool


@dataclass(frozen=True)
class AttachTarget:
    """A validated Attach request: the container's main process. `container_tty` and
    `stdin_once` are how the container was created: the first decides Docker's framing of its
    output, the second whether the client's end of stdin ends the container's."""

    container_id: str
    tty: bool
    container_tty: bool
    stdin_once: bool
    stdin: bool
    stdout: bool
    stderr: bool


@dataclass(frozen=True)
class PortForwardTarget:
    """A validated PortForward request: where to dial. `netns_path` is the pinned network
    namespace of the sandbox, "" for a host-network one (dialled on the host)."""

    sandbox_id: str
    netns_path: str
    ports: tuple[int, ...] = field(default=())


StreamTarget = ExecTarget | AttachTarget | PortForwardTarget


class RequestCache:
    def __init__(
        self,
        ttl: float = TOKEN_TTL,
        limit: int = MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        # Insertion order is expiry order (one TTL for all): the oldest are purged first.
        self._entries: OrderedDict[str, tuple[float, StreamTarget]] = OrderedDict()

    def insert(self, target: StreamTarget) -> str:
        """A new token for `target`; RESOURCE_EXHAUSTED when `limit` tokens are in flight."""
        with self._lock:
            self._purge()
            if len(self._entries) >= self._limit:
                raise ResourceExhaustedError(
                    f"failed to create a streaming URL: {self._limit} are already waiting for "
                    f"their client (they expire after {self._ttl:g} s)"
                )
            while True:
                token = secrets.token_urlsafe(TOKEN_BYTES)
                if token not in self._entries:
                    break
            self._entries[token] = (self._clock() + self._ttl, target)
            return token

    def consume(self, token: str) -> StreamTarget | None:
        """The request behind `token`, once; None when unknown, used or expired."""
        with self._lock:
            self._purge()
            entry = self._entries.pop(token, None)
        return None if entry is None else entry[1]

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._entries)

    def _purge(self) -> None:
        now = self._clock()
        while self._entries:
            token, (expires, _) = next(iter(self._entries.items()))
            if expires > now:
                break
            del self._entries[token]
