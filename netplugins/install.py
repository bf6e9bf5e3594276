"""Write one small executable per CNI type into a directory.

Each is a script whose shebang is the interpreter running the install (so the venv with
pyroute2 is used) and which calls the plugin module's ``main``; the marker line lets
:func:`netplugins.registry.identify` recognise it.
"""

from __future__ import annotations

import os
import sys

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


def install(directory: str, types: list[str] | None = None) -> list[str]:
    """Write the executables atomically into ``directory``; returns their paths."""
    if os.path.realpath(directory) == "/opt/cni/bin" and not os.environ.get("NETPLUGINS_ALLOW_OPT"):
        raise SystemExit("refusing to install into /opt/cni/bin (set NETPLUGINS_ALLOW_OPT=1)")
    os.makedirs(directory, exist_ok=True)
    written = []
    for plugin_type in types or available_types():
        path = os.path.join(directory, plugin_type)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(script_for(plugin_type))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        written.append(path)
    return written
