"""CNI spec version numbers: which this library speaks and how they compare."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Result shapes this library parses and writes. 0.1.0/0.2.0 (ip4/ip6 results) are
# deliberately out: nothing still in use emits them and the issue scopes 0.3.0+.
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT_VERSION = SUPPORTED_VERSIONS[-1]

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def parse_version(version: str) -> tuple[int, int, int]:
    """Split "1.0.0" into (1, 0, 0); ValueError on anything else."""
    match = _VERSION_RE.match(version)
    if match is None:
        raise ValueError(f"{version!r} is not a version of the form X.Y.Z")
    return int(match[1]), int(match[2]), int(match[3])


def at_least(version: str, minimum: str) -> bool:
    return parse_version(version) >= parse_version(minimum)


def is_supported(version: str) -> bool:
    return version in SUPPORTED_VERSIONS


def highest(versions: Iterable[str]) -> str | None:
    """The greatest of `versions` by numeric order, or None when empty."""
    ordered = sorted(versions, key=parse_version)
    return ordered[-1] if ordered else None
