"""The project's layering rules: the threaded shim never loads pyroute2 (namespace work happens
in plugin processes), and the plugins never depend on the shim."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _imports(package: str) -> set[str]:
    names: set[str] = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("shim", "pyroute2"),
        ("netplugins", "shim"),
        ("cnilib", "shim"),
        ("shim", "overlay"),
        ("overlay", "shim"),
    ],
)
def test_no_forbidden_import_in_source(package: str, forbidden: str) -> None:
    bad = {n for n in _imports(package) if n == forbidden or n.startswith(forbidden + ".")}
    assert not bad, f"{package} imports {sorted(bad)}"


def test_running_shim_modules_do_not_load_pyroute2() -> None:
    code = (
        "import sys, shim.main, shim.servicer, shim.sandbox.network;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyroute2'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"
