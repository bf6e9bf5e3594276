"""Plugin state on disk: every path stays inside its data dir; crash leftovers are swept.

flannel (``<dataDir>/<container id>``), tuning (``<dataDir>/<container id>_<ifname>.json``) and
host-local (``<dataDir>/<network>/``) build file names from what the runtime hands them. The
skeleton already refuses bad ``CNI_CONTAINERID`` / ``CNI_IFNAME`` values (as the reference
skel does); :func:`state_path` is the second line of defence, so that no caller that bypasses
the skeleton (in-process delegation, GC replaying saved ids) can write or remove a file
outside the directory it owns.

Saves go through :func:`cnilib.atomic.write_atomic`, whose temporary ``.tmp-*`` file stays
behind when the plugin is killed between writing and renaming it. Nothing ever reads those, so
the plugins' GC removes them (:func:`sweep_temp_files`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import time

from cnilib.atomic import TEMP_PREFIX
from netplugins import errors

# A temp file older than this is no save in progress: a save takes milliseconds. Data dirs
# shared by several networks (flannel's, tuning's) may see another network's save while one
# network's GC runs, so only old leftovers go there.
STALE_TEMP_AGE = 60.0


def state_path(
    data_dir: str,
    name: str,
    what: str = "file name",
    error: type[errors.NetPluginError] = errors.BadEnvironment,
) -> str:
    """``data_dir/name``, where ``name`` must be one plain path component."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise error(f"invalid {what} {name!r}: must be a plain file name inside {data_dir}")
    base = os.path.abspath(data_dir)
    path = os.path.join(base, name)
    if os.path.dirname(path) != base:  # belt and braces: the join left the directory
        raise error(f"invalid {what} {name!r}: escapes {data_dir}")
    return path


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
