"""Durable file writes, shared by the result cache and the shim's checkpoints: state that must
survive a SIGKILL is written to a temporary file, fsync'ed, then renamed over the old one, so a
reader sees the old or the new file, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_file(path: str) -> None:
    """Remove a file if it is there: every removal here is idempotent."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
