"""The container benchmark's checks: CRI log files against their numbered writer, and /proc
memory parsing. Pure functions over fixed bytes and text (no timing, no Docker)."""

from __future__ import annotations

import pytest

from bench.logcheck import count_sequence, cri_payloads, last_payload
from bench.procmem import (
    cpu_between,
    cpu_seconds,
    cpu_with_reaped_children,
    descendants,
    machine_busy_seconds,
    parent_pid,
    pss_kib,
    start_ticks,
    threads,
    vm_rss_kib,
)

TS = b"2024-05-01T10:00:00.123456789Z"


def cri(*lines: tuple[bytes, bytes]) -> list[bytes]:
    return [TS + b" stdout " + tag + b" " + content + b"\n" for tag, content in lines]


def test_payloads_join_partial_lines_up_to_their_end() -> None:
    lines = cri((b"F", b"000000001 a"), (b"P", b"000000002 "), (b"P", b"b"), (b"F", b"c"))
    assert list(cri_payloads(lines)) == [b"000000001 a", b"000000002 bc"]


def test_payloads_of_an_empty_line_and_of_garbage() -> None:
    lines = [TS + b" stderr F \n", b"not a cri line\n"]
    assert list(cri_payloads(lines)) == [b"", b""]


@pytest.mark.parametrize(
    ("numbers", "expected", "lost", "duplicated", "out_of_order", "gaps"),
    [
        ([1, 2, 3, 4], 4, 0, 0, 0, []),
        ([1, 2, 4], 4, 1, 0, 1, [(2, 4)]),
        ([1, 2, 2, 3], 3, 0, 1, 1, [(2, 2)]),
        ([2, 1, 3], 3, 0, 0, 3, [(0, 2), (2, 1), (1, 3)]),
        ([], 2, 2, 0, 0, []),
    ],
)
def test_count_sequence(
    numbers: list[int],
    expected: int,
    lost: int,
    duplicated: int,
    out_of_order: int,
    gaps: list[tuple[int, int]],
) -> None:
    count = count_sequence([b"%09d pad" % n for n in numbers], expected)
    assert (count.lines, count.lost, count.duplicated, count.out_of_order) == (
        len(numbers),
        lost,
        duplicated,
        out_of_order,
    )
    assert count.gaps == gaps
    assert count.malformed == 0


def test_count_sequence_counts_malformed_and_out_of_range() -> None:
    count = count_sequence([b"", b"x 1", b"000000009 too big", b"000000001"], 1)
    assert count.malformed == 3
    assert count.lost == 0


def test_last_payload_is_the_last_complete_line() -> None:
    tail = b"tail of an earlier line\n" + b"".join(cri((b"F", b"000000007 x"))) + TS[:10]
    assert last_payload(tail) == b"000000007 x"
    assert last_payload(b"no newline yet") is None


STATUS = "Name:\tpython\nThreads:\t12\nVmHWM:\t  60000 kB\nVmRSS:\t   53968 kB\n"


def test_status_fields() -> None:
    assert vm_rss_kib(STATUS) == 53968
    assert threads(STATUS) == 12
    assert vm_rss_kib("Name:\tzombie\nState:\tZ (zombie)\n") == 0


def test_parent_pid_with_spaces_and_parentheses_in_the_name() -> None:
    assert parent_pid("4242 (a (b) c) S 17 4242 4242 0 -1") == 17


def test_descendants_walk_the_whole_tree() -> None:
    parents = {10: 1, 11: 10, 12: 10, 13: 11, 20: 1}
    assert descendants(10, parents) == [11, 12, 13]
    assert descendants(13, parents) == []


def test_cpu_seconds_are_utime_plus_stime() -> None:
    stat = "7 (py thon) S 1 7 7 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 99 1 2"
    assert cpu_seconds(stat, ticks_per_second=100) == 3.0


def test_pss_of_smaps_rollup() -> None:
    rollup = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  28000 kB\nPss:  9000 kB\n"
    assert pss_kib(rollup) == 9000


def test_cpu_between_counts_reaped_children_and_labels() -> None:
    # utime stime cutime cstime are fields 14-17, starttime 22; a name with spaces and parens.
    stat = "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 0 0 0 0 150 50 300 100 20 0 1 0 777 0"
    assert cpu_with_reaped_children(stat) == 6.0
    assert start_ticks(stat) == 777
    before = {1: (5, "dockerd", 10.0), 2: (6, "python", 5.0), 3: (7, "runc", 1.0)}
    before |= {9: (8, "kworker/u8:2-events_unbound", 4.0)}
    after = {
        1: (5, "dockerd", 12.5),
        2: (6, "python", 6.0),
        3: (90, "sleep", 0.25),  # pid 3 reused by a process started since: from zero
        4: (91, "kubelet", 3.0),
        9: (8, "kworker/u8:2-writeback", 4.5),  # the same worker, renamed: 0.5 s, not 4.5
        10: (92, "kworker/0:1-mld", 0.25),
    }
    assert cpu_between(before, after, {2: "cri-shim"}) == {
        "kubelet": 3.0,
        "dockerd": 2.5,
        "cri-shim": 1.0,
        "kernel workers (kworker)": 0.75,
        "sleep": 0.25,
    }
    assert machine_busy_seconds("cpu  100 5 50 1000 20 0 5 0 0 0\ncpu0 1 2 3 4\n") == 1.6
