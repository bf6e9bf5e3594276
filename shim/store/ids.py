"""Id look-up shared by the sandbox and container stores: crictl prints 13-character ids, and
kubelet and crictl accept any unique prefix."""

from __future__ import annotations

from collections.abc import Iterable

from shim.errors import InvalidArgumentError, NotFoundError


def resolve_prefix(ids: Iterable[str], id_or_prefix: str, kind: str) -> str:
    """The one id that is, or starts with, `id_or_prefix`; NOT_FOUND or INVALID_ARGUMENT
    (empty, ambiguous) naming `kind` otherwise."""
    if not id_or_prefix:
        raise InvalidArgumentError(f"{kind} id is empty")
    matches = []
    for candidate in ids:
        if candidate == id_or_prefix:
            return candidate
        if candidate.startswith(id_or_prefix):
            matches.append(candidate)
    if not matches:
        raise NotFoundError(f"{kind} {id_or_prefix!r} not found")
    if len(matches) > 1:
        raise InvalidArgumentError(
            f"{kind} id prefix {id_or_prefix!r} is ambiguous: it matches {len(matches)} ids"
        )
    return matches[0]
