"""Leftovers of a crash in the shim's own directories.

An atomic write (cnilib.atomic) that is killed between creating its `.tmp-*` file and the
rename leaves that file behind for ever. At start-up, under the root lock, the ones old enough
that no live writer can still own them are removed (the CNI cache may be shared with other
runtimes or cnitool, whence the age rather than "all of them")."""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
STALE_AFTER_S = 60.0


def sweep_temp_files(directory: str, older_than: float = STALE_AFTER_S) -> list[str]:
    """Remove `.tmp-*` files in `directory` last modified more than `older_than` seconds ago;
    return what was removed."""
    removed: list[str] = []
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < older_than:
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed.append(entry.path)
    if removed:
        log.info("removed %d stale temporary files in %s", len(removed), directory)
    return removed
