"""cri-shim started the way systemd starts cri-shim.service from cri-shim.socket: the test holds
the listening socket (as the socket unit does) and hands it over as fd 3 with LISTEN_FDS=1,
LISTEN_PID set to the shim's own pid and LISTEN_FDNAMES. crictl works through it, no child of
the shim inherits the socket or the variables, the socket file outlives the shim, and a caller
who connects while the shim is down is served by its successor."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from cri_api import api_pb2, api_pb2_grpc
from shim.config import ShimConfig
from shim.engine.proc_tree import descendants, read_ppids
from shim.process import wait_serving
from shim.socket_activation import PRIVATE_SOCKET_NAME
from tests.e2e.conftest import Pods
from tests.e2e.harness import (
    REFERENCE_PLUGINS,
    NetworkPlan,
    Shim,
    new_workdir,
    pod_config,
    serve_shim,
    tool,
)

pytestmark = pytest.mark.integration

FD_NAME = "cri-shim.socket"
# What systemd does between fork and exec: the socket at fd 3, LISTEN_PID = the pid that execs.
LAUNCHER = """
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
if fd != 3:
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "shim.main", *sys.argv[2:]])
"""


def _listen(path: str) -> socket.socket:
    old_umask = os.umask(0o117)  # SocketMode=0660
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
    finally:
        os.umask(old_umask)
    sock.listen(128)
    return sock


def _launch(listener: socket.socket, args: list[str], log_path: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES=FD_NAME)
    fd = listener.fileno()
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(fd), *args],
            env=env,
            pass_fds=(fd,),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


class ActivatedShim(Shim):
    """A Shim whose socket the test binds and passes in, like the socket unit."""

    def __init__(self, workdir: str, bin_dirs: list[str]) -> None:
        super().__init__(workdir, bin_dirs)
        self.listener = _listen(self.socket)
        self.socket_inode = os.stat(self.socket).st_ino

    def start(self) -> None:
        config = dataclasses.replace(self.config(), log_format="json")
        self.proc = _launch(self.listener, config.to_args(), self.log_path)
        wait_serving(self.proc, config, self.log_path)
        self.wait_started()

    def json_lines(self) -> list[dict[str, object]]:
        with open(self.log_path, errors="replace") as f:
            return [json.loads(line) for line in f if line.startswith("{")]


@pytest.fixture
def activated(plan: NetworkPlan, pods: Pods) -> Iterator[ActivatedShim]:
    shim = ActivatedShim(new_workdir(), [REFERENCE_PLUGINS])
    try:
        yield from serve_shim(shim, plan, pods.ids, stop_signal=signal.SIGTERM, require_clean=True)
    finally:
        shim.listener.close()  # systemd stopping the socket unit


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


@pytest.mark.skipif(tool("crictl") is None, reason="crictl could not be installed")
def test_crictl_through_the_inherited_socket(activated: ActivatedShim, pods: Pods) -> None:
    shim = activated
    version = shim.crictl("version").stdout
    assert "RuntimeName:  cri-shim" in version

    sandbox_id = pods.add(shim.run_pod(pod_config()))
    inspect = json.loads(shim.crictl("inspectp", sandbox_id).stdout)
    assert inspect["status"]["state"] == "SANDBOX_READY"
    assert inspect["status"]["network"]["ip"].startswith(shim_subnet_prefix(shim))
    shim.crictl("stopp", sandbox_id)
    shim.crictl("rmp", sandbox_id)

    lines = shim.json_lines()
    served = f"socket activation: serving fd 3 ({FD_NAME}: {shim.socket})"
    assert any(line["message"] == served for line in lines), shim.log()
    ready = [
        line for line in lines if str(line["message"]).startswith(f"sandbox {sandbox_id}: ready")
    ]
    assert ready and ready[0]["sandbox_id"] == sandbox_id
    assert [
        line["sandbox_id"] for line in lines if line["message"] == f"sandbox {sandbox_id}: stopped"
    ]

    # The socket is still the one the "socket unit" bound; gRPC itself listens privately.
    assert os.stat(shim.socket).st_ino == shim.socket_inode
    assert os.path.exists(os.path.join(shim.root, PRIVATE_SOCKET_NAME))

    # No child (the warm plugin worker and its pool) inherited the socket or LISTEN_*.
    assert shim.proc is not None
    listener_inode = str(os.fstat(shim.listener.fileno()).st_ino)
    children = descendants(shim.proc.pid, read_ppids())[1:]  # [0] is the shim itself
    assert children, "the shim should have started its warm plugin worker"
    checked = 0
    for child in children:
        try:  # a pool child may exit between the walk and the look
            with open(f"/proc/{child}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            held = _socket_inodes(child)
        except (FileNotFoundError, ProcessLookupError):
            continue
        checked += 1
        assert not [v for v in environ if v.startswith(b"LISTEN_")], f"pid {child} inherited them"
        assert listener_inode not in held, f"pid {child} holds the CRI socket"
    assert checked, "every child of the shim exited before it could be checked"


def shim_subnet_prefix(shim: Shim) -> str:
    with open(os.path.join(shim.conf_dir, "10-e2e.conflist")) as f:
        subnet = json.load(f)["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
    return str(subnet).rsplit(".", 1)[0] + "."


def test_socket_outlives_the_shim_and_queued_callers_are_served(activated: ActivatedShim) -> None:
    shim = activated
    assert shim.proc is not None
    shim.proc.send_signal(signal.SIGTERM)
    assert shim.proc.wait(timeout=30) == 0
    shim.proc = None
    # Never removed: systemd owns it. The private gRPC socket is cleaned up.
    assert os.stat(shim.socket).st_ino == shim.socket_inode
    assert not os.path.exists(os.path.join(shim.root, PRIVATE_SOCKET_NAME))

    # A call made while no cri-shim runs waits in the socket's backlog, then the next one
    # answers it.
    answer: dict[str, object] = {}

    def call() -> None:
        with grpc.insecure_channel(shim.endpoint) as channel:
            try:
                answer["version"] = (
                    api_pb2_grpc.RuntimeServiceStub(channel)
                    .Version(api_pb2.VersionRequest(), timeout=60)
                    .runtime_name
                )
            except grpc.RpcError as err:
                answer["error"] = err

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1.0)
    assert caller.is_alive() and not answer
    shim.start()
    caller.join(60)
    assert answer == {"version": "cri-shim"}


def test_inherited_socket_at_another_path_is_refused() -> None:
    workdir = new_workdir()
    try:
        listener = _listen(os.path.join(workdir, "other.sock"))
        config = ShimConfig(
            endpoint=f"unix://{workdir}/cri.sock", root_directory=os.path.join(workdir, "root")
        )
        log_path = os.path.join(workdir, "shim.log")
        proc = _launch(listener, config.to_args(), log_path)
        assert proc.wait(timeout=30) == 1
        listener.close()
        with open(log_path) as f:
            log = f.read()
        assert f"fd 3 ({FD_NAME}: {workdir}/other.sock)" in log
        assert f"none a unix stream socket bound to {workdir}/cri.sock" in log
        assert not os.path.exists(os.path.join(workdir, "root"))  # refused before touching it
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
