"""Which CNI types netplugins implements, and how to recognise an installed executable.

An installed executable carries a marker line (``# netplugins-plugin: <type>``) so that the
warm worker's executor and in-process delegation can tell our plugins from foreign binaries by
reading a few bytes, without trusting file names.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from netplugins.skel import PluginSpec

PLUGIN_MODULES: dict[str, str] = {
    "loopback": "netplugins.loopback",
    "bridge": "netplugins.bridge",
    "host-local": "netplugins.host_local",
    "portmap": "netplugins.portmap",
    "flannel": "netplugins.flannel",
    "ptp": "netplugins.ptp",
    "tuning": "netplugins.tuning",
    "bandwidth": "netplugins.bandwidth",
}

MARKER = b"# netplugins-plugin: "

_identified: dict[tuple[str, int, int], str | None] = {}


def available_types() -> list[str]:
    """The types whose module exists in this checkout."""
    out = []
    for plugin_type, module in PLUGIN_MODULES.items():
        if importlib.util.find_spec(module) is not None:
            out.append(plugin_type)
    return out


def identify(path: str) -> str | None:
    """The CNI type of an installed netplugins executable at ``path``, else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_ino, st.st_mtime_ns)
    if key in _identified:
        return _identified[key]
    found: str | None = None
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        head = b""
    for line in head.splitlines():
        if line.startswith(MARKER):
            name = line[len(MARKER) :].decode(errors="replace").strip()
            found = name if name in PLUGIN_MODULES else None
            break
    _identified[key] = found
    return found


def load_spec(plugin_type: str) -> PluginSpec:
    module = importlib.import_module(PLUGIN_MODULES[plugin_type])
    spec = module.PLUGIN
    assert isinstance(spec, PluginSpec)
    return spec
