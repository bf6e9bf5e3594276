"""How much a container has written to its own layer: the size and inode count of its overlay2
upper directory, like `du` (each inode once, allocated blocks, not apparent sizes).

Walking a directory tree is the one expensive part of the stats RPCs, and kubelet asks for
every container every 10 s, so a size is kept for about a minute (cri-dockerd refreshes
`inspect --size` once a minute for the same reason). The upper directory itself never changes
for a container, so Docker is asked for it once per container id, not once per call.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import docker

log = logging.getLogger(__name__)

# Gives the upper directory of a container id; None when the engine has none (another
# storage driver, or the container is gone).
UpperDirLookup = Callable[[str], str | None]

DEFAULT_TTL_S = 60.0


@dataclass(frozen=True)
class LayerUsage:
    timestamp: int  # nanoseconds since the epoch, when the walk finished
    used_bytes: int
    inodes_used: int


def disk_usage(path: str) -> tuple[int, int]:
    """(bytes, inodes) of a tree: st_blocks * 512 of each distinct inode, the root included
    (containerd's `fs.DiskUsage` counts the same way). Entries that vanish mid-walk are
    skipped: the container may be writing while we look."""
    seen: set[tuple[int, int]] = set()
    used = 0
    try:
        root = os.lstat(path)
    except OSError:
        return 0, 0
    seen.add((root.st_dev, root.st_ino))
    used += root.st_blocks * 512
    stack = [path]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                if key not in seen:
                    seen.add(key)
                    used += st.st_blocks * 512
    return used, len(seen)


@dataclass
class _Entry:
    upper_dir: str | None
    usage: LayerUsage | None = None
    expires: float = 0.0  # time.monotonic()


class WritableLayerCache:
    """Sizes of writable layers, each kept for `ttl_s` (±25 %, so that containers created
    together do not all expire in the same call)."""

    def __init__(self, lookup: UpperDirLookup | None, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._entries: dict[str, _Entry] = {}
        self._guard = threading.Lock()

    def usage(self, container_id: str) -> LayerUsage | None:
        now = time.monotonic()
        with self._guard:
            entry = self._entries.get(container_id)
        if entry is not None and entry.usage is not None and now < entry.expires:
            return entry.usage
        if entry is None:
            entry = _Entry(upper_dir=self._find_upper_dir(container_id))
        if entry.upper_dir is None:
            return None
        used, inodes = disk_usage(entry.upper_dir)
        entry.usage = LayerUsage(timestamp=time.time_ns(), used_bytes=used, inodes_used=inodes)
        entry.expires = time.monotonic() + self._ttl_s * random.uniform(0.75, 1.25)
        with self._guard:
            self._entries[container_id] = entry
        return entry.usage

    def forget_all_but(self, container_ids: Iterable[str]) -> None:
        """Drop the entries of containers that no longer exist."""
        keep = set(container_ids)
        with self._guard:
            for stale in [cid for cid in self._entries if cid not in keep]:
                del self._entries[stale]

    def _find_upper_dir(self, container_id: str) -> str | None:
        if self._lookup is None:
            return None
        try:
            return self._lookup(container_id)
        except Exception as err:  # a stats call must not fail for one layer's size
            log.debug("container %s: no writable layer directory: %s", container_id, err)
            return None


def docker_upper_dir(client: docker.APIClient) -> UpperDirLookup:
    """A lookup through a docker.APIClient: `GraphDriver.Data.UpperDir` of `docker inspect`."""

    def lookup(container_id: str) -> str | None:
        data = client.inspect_container(container_id)
        upper = ((data.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir")
        return str(upper) if upper else None

    return lookup
