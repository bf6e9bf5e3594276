"""CNI plugin processes left running by a previous cri-shim of this root directory.

Plugins run in sessions of their own (so a timeout can kill a plugin's whole tree), and busy
warm-worker children outlive their parent by design, so a SIGKILLed shim leaves them running:
an ADD could then finish after the restarted shim's DEL and leak a veth, an address and rules.
Every process the shim starts inherits `CRI_SHIM_ROOT=<root directory>` in its environment
(plugins ignore unknown variables), so at start-up, before the warm worker, recovery and GC,
every process that still carries this root's marker belongs to a dead predecessor (the root
lock guarantees there is no live one) and is killed. Processes are killed one by one, never
by process group: a shim started from a shell shares that shell's group.
"""

from __future__ import annotations

import logging
import os
import signal
import time

log = logging.getLogger(__name__)

MARKER = "CRI_SHIM_ROOT"
KILL_ROUNDS = 20  # a plugin may fork while we look; each round catches what appeared


def mark_environment(root_directory: str) -> None:
    """Give every process this shim starts from now on the marker of its root directory."""
    os.environ[MARKER] = os.path.abspath(root_directory)


def marked_processes(root_directory: str, proc: str = "/proc") -> list[int]:
    needle = f"{MARKER}={os.path.abspath(root_directory)}".encode() + b"\0"
    me = os.getpid()
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(os.path.join(proc, entry, "environ"), "rb") as f:
                environ = f.read()
        except OSError:
            continue  # gone, or a kernel thread
        if (environ + b"\0").find(needle) != -1 and not _is_zombie(proc, entry):
            found.append(int(entry))
    return found


def kill_leftovers(root_directory: str) -> list[int]:
    """SIGKILL every live process marked with this root; return their pids."""
    killed: list[int] = []
    for _ in range(KILL_ROUNDS):
        pids = marked_processes(root_directory)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                continue
        time.sleep(0.05)
    if killed:
        log.warning(
            "killed %d CNI plugin processes left by a previous cri-shim: %s",
            len(set(killed)),
            sorted(set(killed)),
        )
    return killed


def _is_zombie(proc: str, pid: str) -> bool:
    try:
        with open(os.path.join(proc, pid, "stat"), "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")
