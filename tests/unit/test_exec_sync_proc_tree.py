"""The process-tree kill behind ExecSync's timeout, on a fake /proc table."""

from __future__ import annotations

import os
import pathlib
import signal

import pytest

from shim.engine.proc_tree import (
    descendants,
    in_container,
    kill_tree,
    parse_ppid,
    parse_start_time,
    process_start_time,
    read_ppids,
)

CID = "c0ffee" * 10 + "abcd"
OTHER = "beef" * 16


def _proc(root: pathlib.Path, pid: int, ppid: int, comm: str = "sh", cid: str = CID) -> None:
    d = root / str(pid)
    d.mkdir()
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0\n")
    (d / "cgroup").write_text(f"12:pids:/docker/{cid}\n0::/docker/{cid}\n")


@pytest.mark.parametrize(
    ("line", "ppid"),
    [
        ("42 (sleep) S 7 42 42 0", 7),
        ("42 (a b) c) R 9 1 1", 9),  # comm with a space and a ')'
        ("42 ((sd-pam)) S 1 1 1", 1),
    ],
)
def test_parse_ppid(line: str, ppid: int) -> None:
    assert parse_ppid(line) == ppid


@pytest.mark.parametrize(
    ("table", "root", "tree"),
    [
        ({10: 1}, 10, [10]),
        ({10: 1, 11: 10, 12: 10, 13: 11, 20: 1}, 10, [10, 11, 12, 13]),
        ({10: 1, 11: 10}, 11, [11]),  # the parent is not below its child
        ({10: 11, 11: 10}, 10, [10, 11]),  # a corrupt loop terminates
        ({}, 5, [5]),  # the root already exited
    ],
)
def test_descendants(table: dict[int, int], root: int, tree: list[int]) -> None:
    assert descendants(root, table) == tree


def test_read_ppids_skips_non_pids_and_broken_entries(tmp_path: pathlib.Path) -> None:
    _proc(tmp_path, 10, 1)
    _proc(tmp_path, 11, 10, comm="sleep 100)")
    (tmp_path / "self").mkdir()
    (tmp_path / "12").mkdir()  # exited between listdir and open: no stat file
    assert read_ppids(str(tmp_path)) == {10: 1, 11: 10}


def test_in_container(tmp_path: pathlib.Path) -> None:
    _proc(tmp_path, 10, 1)
    _proc(tmp_path, 20, 1, cid=OTHER)
    assert in_container(10, CID, str(tmp_path))
    assert not in_container(20, CID, str(tmp_path))
    assert not in_container(30, CID, str(tmp_path))


class FakeKill:
    def __init__(self, gone: frozenset[int] = frozenset()) -> None:
        self.calls: list[tuple[int, int]] = []
        self._gone = gone

    def __call__(self, pid: int, signum: int) -> None:
        if pid in self._gone:
            raise ProcessLookupError(pid)
        self.calls.append((pid, signum))


def test_kill_tree_stops_then_kills_every_descendant(tmp_path: pathlib.Path) -> None:
    for pid, ppid in [(100, 50), (101, 100), (102, 100), (103, 101), (200, 1)]:
        _proc(tmp_path, pid, ppid)
    kill = FakeKill()
    assert kill_tree(100, CID, str(tmp_path), kill) == [100, 101, 102, 103]
    stops = [p for p, s in kill.calls if s == signal.SIGSTOP]
    kills = [p for p, s in kill.calls if s == signal.SIGKILL]
    assert stops == kills == [100, 101, 102, 103]
    assert kill.calls.index((103, signal.SIGSTOP)) < kill.calls.index((100, signal.SIGKILL))


def test_kill_tree_leaves_a_root_outside_the_container(tmp_path: pathlib.Path) -> None:
    _proc(tmp_path, 100, 1, cid=OTHER)  # the exec's pid was reused by another process
    _proc(tmp_path, 101, 100, cid=OTHER)
    kill = FakeKill()
    assert kill_tree(100, CID, str(tmp_path), kill) == []
    assert kill.calls == []


def test_kill_tree_skips_a_descendant_outside_the_container(tmp_path: pathlib.Path) -> None:
    _proc(tmp_path, 100, 1)
    _proc(tmp_path, 101, 100, cid=OTHER)
    _proc(tmp_path, 102, 100)
    kill = FakeKill()
    assert kill_tree(100, CID, str(tmp_path), kill) == [100, 102]
    assert all(pid != 101 for pid, _ in kill.calls)


def test_kill_tree_tolerates_processes_that_exit_meanwhile(tmp_path: pathlib.Path) -> None:
    for pid, ppid in [(100, 1), (101, 100), (102, 100)]:
        _proc(tmp_path, pid, ppid)
    kill = FakeKill(gone=frozenset({101}))
    assert kill_tree(100, CID, str(tmp_path), kill) == [100, 102]


def test_kill_tree_walks_again_for_children_forked_during_the_walk(
    tmp_path: pathlib.Path,
) -> None:
    _proc(tmp_path, 100, 1)
    _proc(tmp_path, 101, 100)

    class ForkingKill(FakeKill):
        def __call__(self, pid: int, signum: int) -> None:
            super().__call__(pid, signum)
            if (pid, signum) == (101, signal.SIGSTOP) and not (tmp_path / "102").exists():
                _proc(tmp_path, 102, 101)  # 101 forked just before it stopped

    kill = ForkingKill()
    assert kill_tree(100, CID, str(tmp_path), kill) == [100, 101, 102]


# A real /proc/<pid>/stat line (proc(5)): starttime is field 22, here 8923.
_STAT = (
    "1234 (pause) S 1200 1234 1234 0 -1 4194560 96 0 0 0 0 0 0 0 20 0 1 0 8923 "
    "1048576 1 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
)


@pytest.mark.parametrize(
    ("line", "start"),
    [(_STAT, 8923), (_STAT.replace("(pause)", "(a) b (c)"), 8923)],
)
def test_parse_start_time(line: str, start: int) -> None:
    assert parse_start_time(line) == start


def test_process_start_time_of_this_process_and_of_none(tmp_path: pathlib.Path) -> None:
    mine = process_start_time(os.getpid())
    assert mine is not None and mine == process_start_time(os.getpid())
    assert process_start_time(4242, proc_root=str(tmp_path)) is None
