"""CRI log files copied from the real Docker engine's json-file journal (CRI-CONTAINERS.md §2.5 A).

Containers are made directly with the docker SDK from the local busybox test image
(`scripts/test-image.sh`), each with a unique name and a bounded json-file journal; every
container, follower, subprocess and file is cleaned up in fixture finalizers.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator

import docker
import docker.errors
import pytest
from docker.types import LogConfig

from shim.container.log_follower import LogFollowers, LogNotFollowedError
from shim.container.log_writer import MAX_LINE
from shim.process import stop_process

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[2]
IMAGE = "cri-shim.test/busybox:latest"
LOG_CONFIG = LogConfig(type="json-file", config={"max-size": "50m", "max-file": "2"})

# A shim that follows one container until it is SIGKILLed.
RUNNER = """
import sys, time, docker
from shim.container.log_follower import LogFollowers
followers = LogFollowers(docker.APIClient(version="auto"))
followers.follow(sys.argv[1], sys.argv[2], False)
print("following", flush=True)
time.sleep(600)
"""

MakeContainer = Callable[..., str]


@pytest.fixture(scope="module")
def client() -> Iterator[docker.APIClient]:
    api = docker.APIClient(version="auto", timeout=60)
    try:
        api.inspect_image(IMAGE)  # type: ignore[no-untyped-call]
    except docker.errors.ImageNotFound:
        subprocess.run(["bash", str(REPO / "scripts/test-image.sh")], check=True)
    yield api
    api.close()


@pytest.fixture
def make_container(client: docker.APIClient) -> Iterator[MakeContainer]:
    made: list[str] = []

    def make(script: str, tty: bool = False, log_config: LogConfig = LOG_CONFIG) -> str:
        created = client.create_container(
            IMAGE,
            ["sh", "-c", script],
            name=f"cri-shim-logtest-{uuid.uuid4().hex[:12]}",
            tty=tty,
            host_config=client.create_host_config(log_config=log_config),
        )
        made.append(str(created["Id"]))
        return made[-1]

    yield make
    for container_id in made:
        with contextlib.suppress(docker.errors.NotFound):
            client.remove_container(container_id, force=True)


@pytest.fixture
def followers(client: docker.APIClient) -> Iterator[LogFollowers]:
    owner = LogFollowers(client)
    yield owner
    owner.close()


@pytest.fixture
def log_dir() -> Iterator[pathlib.Path]:
    path = pathlib.Path(tempfile.mkdtemp(prefix="cri-shim-logs-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def cri_lines(path: pathlib.Path) -> list[tuple[str, str, bytes]]:
    """(stream, tag, content) of every line, checking the CRI shape."""
    out = []
    for line in path.read_bytes().splitlines():
        stamp, stream, tag, content = line.split(b" ", 3)
        assert len(stamp) == 30 and stamp.endswith(b"Z"), line[:40]
        out.append((stream.decode(), tag.decode(), content))
    return out


def run_to_end(
    client: docker.APIClient,
    followers: LogFollowers,
    container_id: str,
    path: pathlib.Path,
    tty: bool = False,
) -> list[tuple[str, str, bytes]]:
    followers.prepare(container_id, str(path))
    assert path.exists()
    client.start(container_id)
    followers.follow(container_id, str(path), tty)
    client.wait(container_id, timeout=60)
    assert followers.wait_complete(container_id, 30)
    return cri_lines(path)


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_stdout_and_stderr_in_order_with_tags(
    client: docker.APIClient,
    followers: LogFollowers,
    make_container: MakeContainer,
    log_dir: pathlib.Path,
) -> None:
    cid = make_container(
        "i=0; while [ $i -lt 50 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done"
    )
    lines = run_to_end(client, followers, cid, log_dir / "ctr" / "0.log")
    assert [c for s, t, c in lines if s == "stdout"] == [b"out %d" % i for i in range(50)]
    assert [c for s, t, c in lines if s == "stderr"] == [b"err %d" % i for i in range(50)]
    assert {t for _, t, _ in lines} == {"F"}
    assert (log_dir / "ctr" / "0.log").stat().st_mode & 0o777 == 0o640
    stats = followers.stats(cid)
    assert stats is not None and stats.lines_written == 100 and stats.complete


def test_long_line_is_partial_partial_full(
    client: docker.APIClient,
    followers: LogFollowers,
    make_container: MakeContainer,
    log_dir: pathlib.Path,
) -> None:
    cid = make_container("head -c 40000 /dev/zero | tr '\\0' a; echo; echo after")
    lines = run_to_end(client, followers, cid, log_dir / "0.log")
    assert [(t, len(c)) for _, t, c in lines] == [
        ("P", MAX_LINE),
        ("P", MAX_LINE),
        ("F", 40000 - 2 * MAX_LINE),
        ("F", 5),
    ]
    assert b"".join(c for _, _, c in lines[:3]) == b"a" * 40000


def test_output_without_trailing_newline_is_partial(
    client: docker.APIClient,
    followers: LogFollowers,
    make_container: MakeContainer,
    log_dir: pathlib.Path,
) -> None:
    cid = make_container("echo first; printf 'no newline'")
    lines = run_to_end(client, followers, cid, log_dir / "0.log")
    assert lines == [("stdout", "F", b"first"), ("stdout", "P", b"no newline")]


def test_tty_output_is_stdout_without_carriage_returns(
    client: docker.APIClient,
    followers: LogFollowers,
    make_container: MakeContainer,
    log_dir: pathlib.Path,
) -> None:
    cid = make_container(
        "echo one; echo two >&2; head -c 20000 /dev/zero | tr '\\0' b; echo", tty=True
    )
    lines = run_to_end(client, followers, cid, log_dir / "0.log", tty=True)
    assert lines == [
        ("stdout", "F", b"one"),
        ("stdout", "F", b"two"),
        ("stdout", "P", b"b" * MAX_LINE),
        ("stdout", "F", b"b" * (20000 - MAX_LINE)),
    ]


def test_wait_complete_only_after_exit(
    client: docker.APIClient,
    followers: LogFollowers,
    make_container: MakeContainer,
    log_dir: pathlib.Path,
) -> None:
    assert followers.wait_complete("no-such-container", 0)
    cid = make_container("echo start; sleep 2; echo done")
    path = log_dir / "0.log"
    followers.prepare(cid, str(path))
    assert followers.wait_complete(cid, 0)  # prepared, nothing followed yet
    client.start(cid)
    followers.follow(cid, str(path), False)
    assert not followers.wait_complete(cid, 0.5)
    client.wait(cid, timeout=30)
    assert followers.wait_complete(cid, 10)
    assert cri_lines(path)[-1] == ("stdout", "F", b"done")


def test_reopen_after_rename(
    client: docker.APIClient,
    followers: LogFollowers,
    make_container: MakeContainer,
    log_dir: pathlib.Path,
) -> None:
    cid = make_container("i=0; while true; do echo tick $i; i=$((i+1)); usleep 20000; done")
    path = log_dir / "0.log"
    rotated = log_dir / "0.log.20261201-100000"
    with pytest.raises(LogNotFollowedError):
        followers.reopen(cid)
    followers.prepare(cid, str(path))
    client.start(cid)
    followers.follow(cid, str(path), False)
    wait_for(lambda: len(cri_lines(path)) >= 5)
    os.rename(path, rotated)
    followers.reopen(cid)
    assert path.exists()
    wait_for(lambda: len(cri_lines(path)) >= 5)
    size = rotated.stat().st_size
    time.sleep(1)
    assert rotated.stat().st_size == size
    old, new = cri_lines(rotated), cri_lines(path)
    numbers = [int(c.split()[1]) for _, _, c in old + new]
    assert numbers == list(range(len(numbers)))  # nothing lost or doubled at the swap
    client.kill(cid)
    assert followers.wait_complete(cid, 20)
    with pytest.raises(LogNotFollowedError):
        followers.reopen(cid)
    followers.forget(cid)
    followers.forget(cid)


@pytest.fixture
def runner() -> Iterator[Callable[[str, pathlib.Path], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(container_id: str, path: pathlib.Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, container_id, str(path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "following"
        return proc

    yield start
    for proc in started:
        stop_process(proc, sig=signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("resume", ["follow-while-running", "drain-after-exit"])
def test_sigkilled_follower_resumes_without_loss_or_duplicates(
    resume: str,
    client: docker.APIClient,
    followers: LogFollowers,
    make_container: MakeContainer,
    log_dir: pathlib.Path,
    runner: Callable[[str, pathlib.Path], subprocess.Popen[str]],
) -> None:
    total = 40000
    cid = make_container(
        f"i=0; while [ $i -lt {total} ]; do echo $i; i=$((i+1)); "
        "if [ $((i % 400)) -eq 0 ]; then usleep 30000; fi; done"
    )
    path = log_dir / "0.log"
    client.start(cid)
    proc = runner(cid, path)
    wait_for(lambda: path.exists() and path.stat().st_size > 40000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert client.inspect_container(cid)["State"]["Running"], "container ended too early"
    if resume == "drain-after-exit":
        client.wait(cid, timeout=120)
        followers.drain(cid, str(path), False)
    else:
        time.sleep(0.3)  # output while no follower runs
        followers.follow(cid, str(path), False)
        client.wait(cid, timeout=120)
    assert followers.wait_complete(cid, 60)
    lines = cri_lines(path)
    assert {(s, t) for s, t, _ in lines} == {("stdout", "F")}
    assert [int(c) for _, _, c in lines] == list(range(total))


def test_rotations_lose_nothing(
    client: docker.APIClient,
    followers: LogFollowers,
    make_container: MakeContainer,
    log_dir: pathlib.Path,
) -> None:
    """A small journal rotated many times while the follower reads it: every line arrives once,
    in order, and the follower says how many rotations it followed. (Its `lost_files` may
    count a rotation that lost nothing: exactly max-file rotations between two looks cannot be
    told from a loss, so the lines themselves are the proof here.)"""
    total = 200_000
    pad = "x" * 40
    # 2 MB files for many rotations (about eleven), but four of them: the writer is unthrottled
    # and starts before the follower, and with two files a follower held up for ~2 MB by a
    # loaded CI machine lost a whole file (33 088 lines, once in many runs). Production's
    # journal keeps two files of 50 MB: a whole 50 MB file of slack, where this has 6 MB.
    small = LogConfig(type="json-file", config={"max-size": "2m", "max-file": "4"})
    cid = make_container(
        f"awk 'BEGIN{{for(i=0;i<{total};i++) printf \"%09d {pad}\\n\", i}}'",
        log_config=small,
    )
    lines = run_to_end(client, followers, cid, log_dir / "0.log")
    assert [int(c.split()[0]) for _, _, c in lines] == list(range(total))
    stats = followers.stats(cid)
    assert stats is not None and stats.rotations >= 5
