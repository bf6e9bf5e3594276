"""Killing a process tree that Docker will not kill for us.

Docker has no API to signal an exec (moby#35703), but ExecInspect reports the exec's host PID
(moby PR #27470) and the shim runs as root in the host PID namespace, so it can signal the
exec's processes itself. Killing only the exec's own PID is not enough: the children of
`sh -c 'sleep 100 & sleep 200'` are reparented and live on (CRI-CONTAINERS.md §3), so the whole
tree is collected from the `ppid` field of `/proc/*/stat` before anything is killed.

Two guards against hitting a stranger: every PID is checked to sit in the container's cgroup
right before it is signalled (a PID that exited and was reused by another process would not),
and the tree is frozen with SIGSTOP and walked again until it stops growing, so a process that
forks while we walk cannot leave a child behind. Only then is everything SIGKILLed.

The parsing and the walk take a `/proc` root and a `kill` function, so the unit tests run them
on a fake table in a temporary directory.
"""

from __future__ import annotations

import logging
import os
import signal
from collections import defaultdict
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

Kill = Callable[[int, int], None]

# Rounds of freeze-and-walk before giving up on a tree that keeps growing (a fork bomb is
# faster than a walk only if it forks between our SIGSTOPs; each round stops every member seen).
MAX_ROUNDS = 16


def parse_ppid(stat: str) -> int:
    """The parent PID from one `/proc/<pid>/stat` line.

    The command name (field 2) is in parentheses and may itself hold spaces and ')', so the
    fields are counted from the last ')' (proc(5)): state, then ppid.
    """
    rest = stat[stat.rindex(")") + 1 :].split()
    return int(rest[1])


def parse_start_time(stat: str) -> int:
    """When the process started (field 22 of `/proc/<pid>/stat`, clock ticks since boot):
    with the PID, it names one process for good, as a PID alone does not once reused."""
    rest = stat[stat.rindex(")") + 1 :].split()
    return int(rest[19])


def process_start_time(pid: int, proc_root: str = "/proc") -> int | None:
    """The start time of `pid`, or None when no such process exists."""
    try:
        with open(f"{proc_root}/{pid}/stat") as f:
            return parse_start_time(f.read())
    except (FileNotFoundError, ProcessLookupError):
        return None


def read_ppids(proc_root: str = "/proc") -> dict[int, int]:
    """PID → parent PID of every process now in `proc_root`; one that exits mid-walk is skipped."""
    table: dict[int, int] = {}
    for name in os.listdir(proc_root):
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(proc_root, name, "stat")) as f:
                table[int(name)] = parse_ppid(f.read())
        except (OSError, ValueError, IndexError):
            continue
    return table


def descendants(root: int, ppids: Mapping[int, int]) -> list[int]:
    """`root` and every process below it in `ppids`, parents before children."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, ppid in ppids.items():
        if pid != ppid:
            children[ppid].append(pid)
    tree = [root]
    seen = {root}
    index = 0
    while index < len(tree):
        for child in sorted(children.get(tree[index], ())):
            if child not in seen:  # a corrupt table cannot loop us forever
                seen.add(child)
                tree.append(child)
        index += 1
    return tree


def in_container(pid: int, container_id: str, proc_root: str = "/proc") -> bool:
    """Whether `pid` is in the container's cgroup: Docker names the cgroup after the full
    container id with either driver (`/docker/<id>` or `docker-<id>.scope`)."""
    try:
        with open(os.path.join(proc_root, str(pid), "cgroup")) as f:
            return container_id in f.read()
    except OSError:
        return False


def kill_tree(
    root: int,
    container_id: str,
    proc_root: str = "/proc",
    kill: Kill = os.kill,
) -> list[int]:
    """SIGKILL `root` and all its descendants that are in the container; the PIDs signalled.

    Nothing is signalled unless `root` itself is in the container's cgroup (the exec may have
    exited and its PID been reused before we got here).
    """
    if not in_container(root, container_id, proc_root):
        log.info("exec pid %d is gone or not in container %s: nothing to kill", root, container_id)
        return []
    frozen: list[int] = []
    seen: set[int] = set()
    for _ in range(MAX_ROUNDS):
        new = [p for p in descendants(root, read_ppids(proc_root)) if p not in seen]
        if not new:
            break
        for pid in new:
            seen.add(pid)
            # Ordering: check the cgroup right before the signal, so a reused PID is skipped.
            if in_container(pid, container_id, proc_root) and _signal(kill, pid, signal.SIGSTOP):
                frozen.append(pid)
    else:
        log.warning(
            "process tree of %d in %s still growing after %d rounds", root, container_id, MAX_ROUNDS
        )
    # Stopped processes cannot exit or fork, so their PIDs are still theirs: no re-check.
    return [pid for pid in frozen if _signal(kill, pid, signal.SIGKILL)]


def _signal(kill: Kill, pid: int, signum: int) -> bool:
    try:
        kill(pid, signum)
    except ProcessLookupError:
        return False
    return True
