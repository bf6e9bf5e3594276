"""A plugin that floods its output is bounded, not held in memory (issue 10, item 10)."""

from __future__ import annotations

import os
import resource
import stat
from pathlib import Path

import pytest

from cnilib.errors import PluginError
from cnilib.invoke import MAX_STDERR, ExecExecutor

FLOOD_STDOUT = "#!/bin/sh\nhead -c 209715200 /dev/zero\n"
FLOOD_STDERR = (
    "#!/bin/sh\nhead -c 209715200 /dev/zero >&2\n"
    'echo \'{"cniVersion":"1.0.0","code":7,"msg":"flooded"}\'\nexit 1\n'
)


def _plugin(tmp_path: Path, body: str) -> str:
    path = tmp_path / "flood"
    path.write_text(body)
    path.chmod(stat.S_IRWXU)
    return str(path)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_stdout_flood_kills_the_plugin(tmp_path: Path) -> None:
    before = _peak_rss_mib()
    with pytest.raises(PluginError, match="more than 16777216 bytes on stdout"):
        ExecExecutor().run(_plugin(tmp_path, FLOOD_STDOUT), dict(os.environ), b"{}", 60)
    assert _peak_rss_mib() - before < 64  # 200 MB were offered


def test_a_stderr_flood_is_drained_and_kept_short(tmp_path: Path) -> None:
    before = _peak_rss_mib()
    code, out, err = ExecExecutor().run(
        _plugin(tmp_path, FLOOD_STDERR), dict(os.environ), b"{}", 60
    )
    assert code == 1
    assert b"flooded" in out
    assert len(err) == MAX_STDERR
    assert _peak_rss_mib() - before < 64
