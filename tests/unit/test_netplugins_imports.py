"""Import boundaries: pyroute2 only through netplugins.netlink, never from the shim's side."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "netplugins"


def test_only_the_netlink_wrapper_imports_pyroute2() -> None:
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "pyroute2" or n.startswith("pyroute2.") for n in names):
                offenders.append(path.name)
    assert sorted(set(offenders)) == ["netlink.py"]


@pytest.mark.parametrize(
    "module",
    [
        "netplugins.warm",  # what the shim imports
        "netplugins.loopback",  # cold execs of these stay free of the ~110 ms import
        "netplugins.host_local",
        "netplugins.portmap",
        "netplugins.flannel",
    ],
)
def test_module_does_not_pull_in_pyroute2(module: str) -> None:
    code = f"import sys, {module}; sys.exit(1 if 'pyroute2' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
