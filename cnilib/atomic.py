"""Durable file writes, shared by the result cache, the shim's checkpoints and the netplugins'
state: state that must survive a SIGKILL is written to a temporary file, fsync'ed, then renamed
over the old one, so a reader sees the old or the new file, never half of one.

Temporary files are named ``.tmp-*`` (TEMP_PREFIX) beside the target; one left by a process
killed between create and rename is garbage that its owner sweeps (`sweep_temp_files`)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time

TEMP_PREFIX = ".tmp-"


def write_atomic(path: str, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once.

    ``durable=False`` skips the fsyncs: still never half a file, but possibly the old one
    after a power loss. For state that dies with the node anyway (host-local's round-robin
    position, like the reference writes it), where an fsync costs tens of ms under I/O load.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if not durable:
        return
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_file(path: str) -> None:
    """Remove a file if it is there: every removal here is idempotent."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# A temp file older than this is no save in progress: a save takes milliseconds. Directories
# shared with other writers (the CNI cache, flannel's and tuning's data dirs used by several
# networks) may hold another's save in progress, so only old leftovers go there.
STALE_TEMP_AGE = 60.0


def is_temp_file(name: str) -> bool:
    """Only the ``.tmp-`` prefix: no container id, network name or address starts with a dot,
    so nothing else can be mistaken for a leftover (a "<id>.tmp1" may be a container's)."""
    return name.startswith(TEMP_PREFIX)


def sweep_temp_files(directory: str, max_age: float = STALE_TEMP_AGE) -> list[str]:
    """Remove the temp files in ``directory`` last modified more than ``max_age`` seconds ago
    (``0``: all of them, for a caller whose lock excludes every writer); returns their names.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    removed = []
    now = time.time()
    for name in sorted(names):
        if not is_temp_file(name):
            continue
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < max_age:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(name)
    return removed
