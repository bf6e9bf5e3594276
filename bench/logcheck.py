"""Checking a CRI log file against what its container wrote: pure functions over bytes.

The benchmark's writer prints numbered lines (`%09d <padding>`), 1..N, one per line, so the
file alone says which lines were lost, repeated or reordered. A CRI log line is
`<RFC 3339 timestamp> <stream> <tag> <content>`, tag `P` for a partial line continued by the
next, `F` for the end of one (the CRI's "kubelet/kuberuntime/logs" format, as containerd writes
it)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

MAX_GAPS = 10


def cri_payloads(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The container's own lines: the content of each CRI line, partial ones joined up to
    their `F`. A line that is not a CRI line comes out as b"" (counted as malformed)."""
    pending: list[bytes] = []
    for line in lines:
        parts = line.rstrip(b"\n").split(b" ", 3)
        if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr"):
            yield b""
            continue
        content = parts[3] if len(parts) == 4 else b""
        if parts[2] == b"P":
            pending.append(content)
            continue
        if pending:
            pending.append(content)
            content = b"".join(pending)
            pending = []
        yield content
    if pending:
        yield b"".join(pending)


@dataclass
class SequenceCount:
    expected: int
    lines: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    malformed: int = 0
    # The first places where the sequence jumps: (the line before, the line after).
    gaps: list[tuple[int, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def count_sequence(payloads: Iterable[bytes], expected: int) -> SequenceCount:
    """Lines 1..expected should each appear once, in order: count what does not. A jump
    (`out_of_order`) is any line that does not follow its predecessor by one."""
    count = SequenceCount(expected=expected)
    seen = bytearray(expected + 1)
    previous = 0
    for payload in payloads:
        count.lines += 1
        head = payload.split(b" ", 1)[0]
        if not head.isdigit() or not 1 <= int(head) <= expected:
            count.malformed += 1
            continue
        number = int(head)
        if seen[number]:
            count.duplicated += 1
        seen[number] = 1
        if number != previous + 1:
            count.out_of_order += 1
            if len(count.gaps) < MAX_GAPS:
                count.gaps.append((previous, number))
        previous = number
    count.lost = expected - sum(seen)
    return count


def last_payload(tail: bytes) -> bytes | None:
    """The content of the last complete CRI line in `tail` (the end of a file), or None."""
    end = tail.rfind(b"\n")
    if end < 0:
        return None
    start = tail.rfind(b"\n", 0, end) + 1
    parts = tail[start:end].split(b" ", 3)
    if len(parts) != 4:
        return None
    return parts[3]
