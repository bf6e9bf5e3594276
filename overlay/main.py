"""The `pyflanneld` console script (being built: issue 11)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("pyflanneld: not built yet", file=sys.stderr)
    return 2
