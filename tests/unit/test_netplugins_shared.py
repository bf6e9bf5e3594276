"""netplugins keeps one copy of what cnilib already has: atomic saves, the plugin lookup, the
spec's versions and error codes; and one parser for the iptables comments GC reads."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from cnilib import errors as cni_errors
from cnilib import version as cni_version
from netplugins import delegation, errors, iptables, result

PACKAGE = Path(__file__).resolve().parents[2] / "netplugins"


def _os_calls(name: str) -> list[str]:
    """Where ``os.<name>`` is used in netplugins."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == name
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_hand_written_atomic_save_in_netplugins() -> None:
    """Every temp-then-rename goes through cnilib.atomic.write_atomic (``.tmp-*`` names)."""
    assert _os_calls("replace") == [] and _os_calls("rename") == []


def test_versions_and_error_codes_are_cnilib_s() -> None:
    assert result.SUPPORTED_VERSIONS is cni_version.SUPPORTED_VERSIONS
    assert (errors.INVALID_ENVIRONMENT, errors.INTERNAL, errors.NOT_AVAILABLE) == (
        cni_errors.CODE_INVALID_ENVIRONMENT,
        cni_errors.CODE_INTERNAL,
        cni_errors.CODE_PLUGIN_NOT_AVAILABLE,
    )
    assert result.version_tuple("1.1.0") == (1, 1, 0)
    assert result.version_tuple("garbage") < (0, 3, 0)


def test_find_plugin_is_cnilib_s_lookup_as_a_plugin_error(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
    (first / "bridge").write_text("not executable")
    (second / "bridge").write_text("#!/bin/sh\n")
    os.chmod(second / "bridge", 0o755)
    assert delegation.find_plugin("bridge", (str(first), str(second))) == str(second / "bridge")
    for bad in ("nosuch", "../b/bridge"):
        with pytest.raises(errors.NetPluginError) as info:
            delegation.find_plugin(bad, (str(first), str(second)))
        assert info.value.code == errors.INTERNAL
        assert isinstance(info.value.__cause__, cni_errors.PluginNotFoundError)


def test_one_parser_for_gc_comments() -> None:
    rules = [
        '-A POSTROUTING -s 10.0.0.2/32 -m comment --comment "name: \\"net1\\" id: \\"c1\\"" '
        "-j CNI-abc",
        '-A POSTROUTING -m comment --comment "name: \\"net10\\" id: \\"c2\\"" -j CNI-def',
        '-A CNI-HOSTPORT-DNAT -m comment --comment "dnat name: \\"net1\\" id: \\"c3\\"" -j X',
    ]
    assert iptables.ids_in_comments(rules, "net1") == {"c1"}
    assert iptables.ids_in_comments(rules, "net1", "dnat ") == {"c3"}
