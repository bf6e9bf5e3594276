"""Write one small executable per CNI type into a directory.

Each is a script whose shebang is the interpreter running the install (so the venv with
pyroute2 is used) and which calls the plugin module's ``main``; the marker line lets
:func:`netplugins.registry.identify` recognise it.
"""

from __future__ import annotations

import os
import sys

from cnilib.atomic import write_atomic
from netplugins.registry import MARKER, PLUGIN_MODULES, available_types

_TEMPLATE = """#!{python}
{marker}{plugin_type}
# CNI plugin "{plugin_type}" from cri-shim netplugins (python -m netplugins install).
from {module} import main

main()
"""


def script_for(plugin_type: str, python: str | None = None) -> str:
    return _TEMPLATE.format(
        python=python or sys.executable,
        marker=MARKER.decode(),
        plugin_type=plugin_type,
        module=PLUGIN_MODULES[plugin_type],
    )


SYSTEM_DIR = "/opt/cni/bin"


def install(
    directory: str, types: list[str] | None = None, allow_system_dir: bool = False
) -> list[str]:
    """Write the executables atomically into ``directory``; returns their paths.

    /opt/cni/bin holds the node's reference binaries, which other runtimes use: replacing them
    needs ``allow_system_dir`` (``--allow-opt-cni-bin``) or NETPLUGINS_ALLOW_OPT=1.
    """
    allowed = allow_system_dir or bool(os.environ.get("NETPLUGINS_ALLOW_OPT"))
    if os.path.realpath(directory) == SYSTEM_DIR and not allowed:
        raise SystemExit(f"refusing to install into {SYSTEM_DIR} without --allow-opt-cni-bin")
    os.makedirs(directory, exist_ok=True)
    written = []
    for plugin_type in types or available_types():
        path = os.path.join(directory, plugin_type)
        write_atomic(path, script_for(plugin_type).encode(), mode=0o755)
        written.append(path)
    return written
