"""CNI result dicts: normalise any supported version, emit in the version asked for.

Plugins build results in the 1.x shape (SPEC 1.0.0 "Success"). Versions 0.3.x and 0.4.0 add a
``version`` ("4"/"6") to each entry of ``ips``; 1.x removed it. Nothing else differs for the
fields we produce, so conversion is a small rewrite of ``ips``.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from cnilib.version import SUPPORTED_VERSIONS, parse_version

__all__ = ["SUPPORTED_VERSIONS", "convert", "ip_family", "normalize", "version_tuple"]


def version_tuple(version: str) -> tuple[int, ...]:
    """(X, Y, Z) of "X.Y.Z"; (0,) for anything else (sorts below every real version)."""
    try:
        return parse_version(version)
    except ValueError:
        return (0,)


def ip_family(address: str) -> int:
    return ipaddress.ip_interface(address).version


def normalize(result: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``result`` in the 1.x shape (no ``ips[].version``)."""
    out = copy.deepcopy(result)
    for ip in out.get("ips") or []:
        ip.pop("version", None)
    return out


def convert(result: dict[str, Any], version: str) -> dict[str, Any]:
    """Return ``result`` shaped for ``version`` with its ``cniVersion`` set."""
    out = normalize(result)
    out["cniVersion"] = version
    if version_tuple(version) < (1, 0, 0):
        for ip in out.get("ips") or []:
            ip["version"] = str(ip_family(ip["address"]))
    for key in ("interfaces", "ips", "routes"):
        if key in out and not out[key]:
            del out[key]
    if "dns" in out and not out["dns"]:
        del out["dns"]
    return out
