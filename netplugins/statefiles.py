"""Plugin state on disk: every path stays inside its data dir; crash leftovers are swept.

flannel (``<dataDir>/<container id>``), tuning (``<dataDir>/<container id>_<ifname>.json``) and
host-local (``<dataDir>/<network>/``) build file names from what the runtime hands them. The
skeleton already refuses bad ``CNI_CONTAINERID`` / ``CNI_IFNAME`` values (as the reference
skel does); :func:`state_path` is the second line of defence, so that no caller that bypasses
the skeleton (in-process delegation, GC replaying saved ids) can write or remove a file
outside the directory it owns.

Saves go through :func:`cnilib.atomic.write_atomic`, whose temporary ``.tmp-*`` file stays
behind when the plugin is killed between writing and renaming it. Nothing ever reads those, so
the plugins' GC removes them (:func:`cnilib.atomic.sweep_temp_files`).
"""

from __future__ import annotations

import os

from netplugins import errors


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
