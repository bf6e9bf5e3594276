"""A process's resident memory and its descendants, from /proc text (pure parsers and a thin
reader): the shim's RSS is counted apart from its children's (the warm CNI worker's pool)."""

from __future__ import annotations

import os


def vm_rss_kib(status: str) -> int:
    """`VmRSS:` of /proc/<pid>/status, in KiB (0 for a zombie, which has none)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def threads(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def _after_name(stat: str) -> list[str]:
    """The fields of /proc/<pid>/stat from the state (field 3) on. The command name may hold
    spaces and parentheses, so they are counted from its last ')'."""
    return stat[stat.rindex(")") + 2 :].split()


def parent_pid(stat: str) -> int:
    """The ppid of /proc/<pid>/stat."""
    return int(_after_name(stat)[1])


def cpu_seconds(stat: str, ticks_per_second: int = 100) -> float:
    """utime + stime of /proc/<pid>/stat (fields 14 and 15), in seconds."""
    fields = _after_name(stat)
    return (int(fields[11]) + int(fields[12])) / ticks_per_second


def pss_kib(smaps_rollup: str) -> int:
    """`Pss:` of /proc/<pid>/smaps_rollup: forked workers share most of their pages, which
    VmRSS counts in full in each of them."""
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int, parents: dict[int, int]) -> list[int]:
    """Every process below `pid` in the tree `parents` (child -> parent), parents first."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    out: list[int] = []
    todo = sorted(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(sorted(children.get(p, [])))
    return out


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def process_table() -> dict[int, int]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                table[int(entry)] = parent_pid(_read(f"/proc/{entry}/stat"))
            except (OSError, ValueError):
                continue  # exited while we looked
    return table


def memory_of(pid: int) -> dict[str, object]:
    """VmRSS (MiB) and threads of `pid`, and the same for each descendant, counted apart."""
    status = _read(f"/proc/{pid}/status")
    children: list[tuple[str, int, int]] = []
    for child in descendants(pid, process_table()):
        try:
            child_status = _read(f"/proc/{child}/status")
            child_pss = pss_kib(_read(f"/proc/{child}/smaps_rollup"))
            cmdline = _read(f"/proc/{child}/cmdline").replace("\0", " ").strip()
        except OSError:
            continue
        children.append((cmdline, vm_rss_kib(child_status), child_pss))
    return {
        "shim_vm_rss_mib": round(vm_rss_kib(status) / 1024, 1),
        "shim_pss_mib": round(pss_kib(_read(f"/proc/{pid}/smaps_rollup")) / 1024, 1),
        "shim_threads": threads(status),
        "children": len(children),
        "children_vm_rss_mib": round(sum(kib for _, kib, _ in children) / 1024, 1),
        "children_pss_mib": round(sum(pss for _, _, pss in children) / 1024, 1),
        "each_child_vm_rss_mib": [round(kib / 1024, 1) for _, kib, _ in children],
        "children_commands": sorted({cmd[:100] for cmd, _, _ in children}),
    }


def cpu_of(pid: int) -> float:
    """CPU seconds `pid` has used so far (all its threads)."""
    return cpu_seconds(_read(f"/proc/{pid}/stat"), os.sysconf("SC_CLK_TCK"))


def cpu_with_reaped_children(stat: str, ticks_per_second: int = 100) -> float:
    """utime + stime + cutime + cstime (fields 14-17), in seconds: what a process and the
    children it has reaped have used (runc, plugins and iptables are short-lived)."""
    return sum(int(f) for f in _after_name(stat)[11:15]) / ticks_per_second


def command_name(stat: str) -> str:
    return stat[stat.index("(") + 1 : stat.rindex(")")]


def start_ticks(stat: str) -> int:
    """When the process started (field 22, clock ticks since boot): with the pid, its identity
    (a kernel worker renames itself after each work item it runs)."""
    return int(_after_name(stat)[19])


def command_group(comm: str) -> str:
    """Kernel workers, named after their current work item, are counted as one."""
    return "kernel workers (kworker)" if comm.startswith("kworker/") else comm


# pid -> (start ticks, command name, CPU seconds with reaped children)
CpuTable = dict[int, tuple[int, str, float]]


def cpu_table() -> CpuTable:
    """Every process now, with the CPU it and its reaped children have used."""
    ticks = os.sysconf("SC_CLK_TCK")
    table: CpuTable = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = _read(f"/proc/{entry}/stat")
            except OSError:
                continue  # exited while we looked
            table[int(entry)] = (
                start_ticks(stat),
                command_name(stat),
                cpu_with_reaped_children(stat, ticks),
            )
    return table


def cpu_between(before: CpuTable, after: CpuTable, names: dict[int, str]) -> dict[str, float]:
    """CPU seconds used between two tables, summed by command (kernel workers as one), except
    the pids `names` labels (summed under their label), largest first. A process started in
    between counts from zero. A process that ended without being reaped by a parent still
    alive is missed; the caller reports the machine's total beside."""
    used: dict[str, float] = {}
    for pid, (started, comm, cpu) in after.items():
        earlier = before.get(pid)
        start = earlier[2] if earlier is not None and earlier[0] == started else 0.0
        label = names.get(pid, command_group(comm))
        used[label] = used.get(label, 0.0) + cpu - start
    return dict(sorted(((k, round(v, 2)) for k, v in used.items() if v > 0), key=lambda kv: -kv[1]))


def machine_busy_seconds(proc_stat: str, ticks_per_second: int = 100) -> float:
    """CPU seconds the machine has been busy (all of /proc/stat's "cpu" line but idle and
    iowait)."""
    values = [int(v) for v in proc_stat.splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / ticks_per_second


def machine_busy_now() -> float:
    return machine_busy_seconds(_read("/proc/stat"), os.sysconf("SC_CLK_TCK"))
