"""Durable file writes, shared by the result cache, the shim's checkpoints and the netplugins'
state: state that must survive a SIGKILL is written to a temporary file, fsync'ed, then renamed
over the old one, so a reader sees the old or the new file, never half of one.

Temporary files are named ``.tmp-*`` (TEMP_PREFIX) beside the target; one left by a process
killed between create and rename is garbage that its owner's GC may sweep."""

from __future__ import annotations

import contextlib
import os
import tempfile

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
