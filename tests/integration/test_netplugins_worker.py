"""The warm worker and WarmExecutor: same answers as exec, fallbacks, timeouts, lifetime."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from cnilib.errors import PluginTimeoutError
from cnilib.invoke import ExecExecutor
from netplugins.install import script_for
from netplugins.warm import WarmExecutor
from shim.process import stop_process
from tests.integration import test_netplugins_support as support
from tests.integration.test_netplugins_support import REF_DIR, netns_path

pytestmark = [pytest.mark.integration, support.needs_root]


@pytest.fixture
def warm() -> Iterator[WarmExecutor]:
    executor = WarmExecutor()
    executor.start()
    try:
        yield executor
    finally:
        executor.stop()


def _env(command: str, netns: str, plugin_dir: str, ifname: str = "lo") -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "npt-worker-1",
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": "",
        "CNI_PATH": plugin_dir,
    }


LOOPBACK = json.dumps({"cniVersion": "1.0.0", "name": "npt-w", "type": "loopback"}).encode()


def test_warm_answers_like_exec(ours: str, warm: WarmExecutor) -> None:
    with support.resources() as res:
        ns = netns_path(res.new_netns())
        path = os.path.join(ours, "loopback")
        for command in ("VERSION", "ADD", "CHECK", "DEL"):
            env = _env(command, ns, ours)
            assert warm.run(path, env, LOOPBACK, 30) == ExecExecutor().run(path, env, LOOPBACK, 30)
        bad = warm.run(path, _env("ADD", ns, ours), b"{garbage", 30)
        assert bad[0] != 0 and json.loads(bad[1])["code"] == 6
    # Every one of those was answered by the worker: an exec fallback would answer the same.
    assert warm.counts["fallback"] == 0
    assert warm.counts["warm"] >= 5


@support.needs_reference
def test_foreign_binaries_are_exec_d(ours: str, warm: WarmExecutor) -> None:
    code, out, _ = warm.run(
        os.path.join(REF_DIR, "loopback"), _env("VERSION", "", REF_DIR), b"", 30
    )
    assert code == 0
    assert "0.1.0" in json.loads(out)["supportedVersions"]  # only the Go binary lists 0.1.0


def test_timeout_kills_the_request_and_its_children(
    ours: str, warm: WarmExecutor, tmp_path: Path
) -> None:
    """A delegate that hangs: the child's whole process group is killed at the deadline."""
    sleeper = tmp_path / "sleepy-ipam"
    pid_file = tmp_path / "pid"
    sleeper.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    sleeper.chmod(0o755)
    conf = {
        "cniVersion": "1.0.0",
        "name": "npt-w",
        "type": "bridge",
        "bridge": "nptwork0",
        "ipam": {"type": "sleepy-ipam"},
    }
    with support.resources() as res:
        res.bridges.append("nptwork0")
        ns = netns_path(res.new_netns())
        env = _env("ADD", ns, f"{ours}:{tmp_path}", "eth0")
        started = time.monotonic()
        with pytest.raises(PluginTimeoutError):
            warm.run(os.path.join(ours, "bridge"), env, json.dumps(conf).encode(), 2.0)
        assert time.monotonic() - started < 30
        for _ in range(50):
            if pid_file.exists():
                break
            time.sleep(0.1)
        pid = int(pid_file.read_text())
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the hanging delegate survived the timeout")


def test_worker_restarts_after_dying(ours: str, warm: WarmExecutor) -> None:
    path = os.path.join(ours, "loopback")
    assert warm._proc is not None
    zygote = warm._proc.pid
    pool: list[int] = []
    for _ in range(50):  # the pool is forked right after "ready"
        children = Path(f"/proc/{zygote}/task/{zygote}/children").read_text().split()
        pool = [int(p) for p in children]
        if pool:
            break
        time.sleep(0.1)
    assert pool, "the zygote keeps pre-forked children"
    warm._proc.kill()
    warm._proc.wait()
    code, out, _ = warm.run(path, _env("VERSION", "", ours), b"", 30)
    assert code == 0 and json.loads(out)["cniVersion"]
    assert warm.running
    for _ in range(50):  # idle pool children die with their zygote (PR_SET_PDEATHSIG)
        if not any(Path(f"/proc/{pid}").exists() for pid in pool):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"pool children {pool} outlived their zygote")


class _RecordingExec:
    """The real ExecExecutor, remembering what it ran: tells which path served a call."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def run(
        self, path: str, env: Mapping[str, str], stdin: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]:
        self.paths.append(path)
        return ExecExecutor().run(path, env, stdin, timeout)


def _children(pid: int) -> dict[int, str]:
    """The direct children of ``pid`` and their state letter (Z: a zombie nobody reaped)."""
    states = {}
    for text in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        with_state = Path(f"/proc/{text}/stat").read_text().rsplit(")", 1)[1].split()
        states[int(text)] = with_state[0]
    return states


def _worker_processes(socket_path: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,ppid,stat,args"], capture_output=True, text=True)
    return [line for line in ps.stdout.splitlines() if socket_path in line]


def test_pool_survives_timed_out_requests(ours: str, tmp_path: Path) -> None:
    """Each timeout kills a pool child; the zygote replaces it, so the pool never runs dry.

    More requests time out than the pool has children; a request afterwards must still be
    served by a worker child (never the exec fallback), and nothing is left after stop.
    """
    fallback = _RecordingExec()
    executor = WarmExecutor(fallback=fallback)
    data_dir = tmp_path / "ipam"
    conf = {
        "cniVersion": "1.0.0",
        "name": "npt-w-block",
        "type": "host-local",
        "ipam": {"type": "host-local", "subnet": "10.202.240.0/24", "dataDir": str(data_dir)},
    }
    (data_dir / "npt-w-block").mkdir(parents=True)
    # host-local serialises on this flock: while we hold it, every ADD blocks until killed.
    lock_fd = os.open(data_dir / "npt-w-block" / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    pids: set[int] = set()
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        executor.start()
        assert executor._proc is not None
        zygote = executor._proc.pid
        pids.add(zygote)
        with support.resources() as res:
            ns = netns_path(res.new_netns())
            host_local = os.path.join(ours, "host-local")
            for i in range(6):  # pool_size is 4
                env = dict(_env("ADD", ns, ours, "eth0"), CNI_CONTAINERID=f"npt-worker-t{i}")
                with pytest.raises(PluginTimeoutError, match="warm worker child"):
                    executor.run(host_local, env, json.dumps(conf).encode(), 1.0)
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        code, out, _ = executor.run(
            os.path.join(ours, "loopback"), _env("VERSION", "", ours), b"", 30
        )
        assert code == 0 and json.loads(out)["cniVersion"]
        assert fallback.paths == [], "a request went to exec: the pool ran dry"
        for _ in range(100):  # replacements are forked as killed children are reaped
            children = _children(zygote)
            pids.update(children)
            if len(children) == 4 and "Z" not in children.values():
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the pool was not refilled to 4 live children: {children}")
    finally:
        executor.stop()
        os.close(lock_fd)
    for _ in range(100):
        left = _worker_processes(executor.socket_path)
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        if not left and not alive:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"worker processes outlived stop: {left}, pids {alive}")


def test_unreachable_worker_falls_back_to_exec(ours: str, tmp_path: Path) -> None:
    executor = WarmExecutor(python=str(tmp_path / "no-such-python"))
    try:
        code, out, _ = executor.run(
            os.path.join(ours, "loopback"), _env("VERSION", "", ours), b"", 30
        )
    finally:
        executor.stop()
    assert code == 0 and "1.1.0" in json.loads(out)["supportedVersions"]


def test_worker_exits_with_its_parent(tmp_path: Path) -> None:
    """The worker reads EOF on stdin when its starter dies, and exits (never outlives a shim)."""
    sock = tmp_path / "w.sock"
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess,sys,time\n"
            f"p=subprocess.Popen([sys.executable,'-m','netplugins','worker','--socket',{str(sock)!r}],"
            "stdin=subprocess.PIPE,stdout=subprocess.PIPE)\n"
            "print(p.pid, p.stdout.readline().decode().strip(), flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert starter.stdout is not None
        pid_text, ready = starter.stdout.readline().split()
        assert ready == "ready"
        worker_pid = int(pid_text)
        starter.kill()
        starter.wait()
        for _ in range(100):
            try:
                os.kill(worker_pid, 0)
            except ProcessLookupError:
                break
            if Path(f"/proc/{worker_pid}/stat").read_text().split()[2] == "Z":
                break
            time.sleep(0.1)
        else:
            os.kill(worker_pid, signal.SIGKILL)
            pytest.fail("worker outlived its parent")
        assert not sock.exists()
    finally:
        stop_process(starter, sig=signal.SIGKILL)


def test_installed_script_shape(tmp_path: Path) -> None:
    text = script_for("bridge")
    assert text.startswith(f"#!{sys.executable}\n")
    assert "# netplugins-plugin: bridge\n" in text
    assert "from netplugins.bridge import main" in text


@pytest.mark.parametrize(
    "plugin_type",
    ["loopback", "bridge", "host-local", "portmap", "flannel", "ptp", "tuning", "bandwidth"],
)
def test_every_installed_plugin_answers_version(
    plugin_type: str, ours: str, warm: WarmExecutor
) -> None:
    path = os.path.join(ours, plugin_type)
    conf = json.dumps({"cniVersion": "0.4.0"}).encode()
    for executor in (ExecExecutor(), warm):
        code, out, _ = executor.run(path, _env("VERSION", "", ours), conf, 30)
        assert code == 0
        assert json.loads(out) == {
            "cniVersion": "0.4.0",
            "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
        }


# Runs in a fresh interpreter: the zygote's preload, then a bridge + host-local ADD and DEL in
# the same process, as a forked child would serve them; prints the modules the commands imported.
_IMPORTS_AFTER_PRELOAD = """
import json, os, sys
from netplugins import registry, skel, worker
worker._preload()
before = set(sys.modules)
env, conf = json.loads(sys.argv[1]), sys.argv[2].encode()
for command in ("ADD", "DEL"):
    env["CNI_COMMAND"] = command
    os.environ.clear()
    os.environ.update(env)
    code, out, err = skel.run(registry.load_spec("bridge"), env, conf)
    assert code == 0, (command, out, err)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_a_warm_child_imports_nothing_the_zygote_could_have(ours: str, tmp_path: Path) -> None:
    """Every import in a child is paid again on every request (CPU and copy-on-write faults)."""
    conf = {
        "cniVersion": "1.0.0",
        "name": "npt-w",
        "type": "bridge",
        "bridge": "nptwork1",
        "ipam": {"type": "host-local", "subnet": "10.202.77.0/24", "dataDir": str(tmp_path)},
    }
    with support.resources() as res:
        res.bridges.append("nptwork1")
        env = _env("ADD", netns_path(res.new_netns()), ours, "eth0")
        proc = subprocess.run(
            [sys.executable, "-c", _IMPORTS_AFTER_PRELOAD, json.dumps(env), json.dumps(conf)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
