"""What the streaming tests share: the CRI streaming RPCs of a test shim, a busybox pod to
stream into, the processes of a container, the shim's own fds and threads, crictl with our
endpoint, and a private tmux server that gives crictl a real terminal."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from cri_api import api_pb2
from tests.e2e.harness import Shim, container_config, pod_config, tool

T = TypeVar("T")

# A page httpd serves in the port-forward pods, and the size of a second, bigger file.
PAGE = "hello through the streaming server"
BIG_FILE_BYTES = 1_000_000
WEB_SCRIPT = (
    f"mkdir -p /www && echo '{PAGE}' > /www/index.html"
    f" && head -c {BIG_FILE_BYTES} /dev/urandom > /www/big"
    " && exec httpd -f -p {port} -h /www"
)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as err:
            last = err
        if time.monotonic() > deadline:
            cause = f" (last error: {last!r})" if last else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{cause}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the RPCs -----------------------------------------------------------------------------------


def exec_url(
    shim: Shim,
    container_id: str,
    cmd: list[str],
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    tty: bool = False,
) -> str:
    request = api_pb2.ExecRequest(
        container_id=container_id, cmd=cmd, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty
    )
    return str(shim.runtime().Exec(request, timeout=30).url)


def attach_url(
    shim: Shim, container_id: str, stdin: bool = True, stdout: bool = True, tty: bool = False
) -> str:
    request = api_pb2.AttachRequest(
        container_id=container_id, stdin=stdin, stdout=stdout, stderr=not tty, tty=tty
    )
    return str(shim.runtime().Attach(request, timeout=30).url)


def port_forward_url(shim: Shim, sandbox_id: str, ports: list[int]) -> str:
    request = api_pb2.PortForwardRequest(pod_sandbox_id=sandbox_id, port=ports)
    return str(shim.runtime().PortForward(request, timeout=30).url)


def exec_sync(shim: Shim, container_id: str, cmd: list[str], timeout: int = 10) -> str:
    response = shim.runtime().ExecSync(
        api_pb2.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout),
        timeout=timeout + 30,
    )
    assert response.exit_code == 0, (cmd, response.stderr)
    return response.stdout.decode(errors="replace")


def processes(shim: Shim, container_id: str) -> list[str]:
    """The command lines running in the container's PID namespace (busybox ps)."""
    lines = exec_sync(shim, container_id, ["ps", "-o", "args"]).splitlines()[1:]
    return [line.strip() for line in lines if not line.startswith("ps ")]


# -- pods ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A running pod with one container: what a streaming session goes into."""

    sandbox_id: str
    container_id: str
    sandbox_config: api_pb2.PodSandboxConfig


def start_box(
    shim: Shim,
    log_dir: str,
    command: list[str] | None = None,
    name: str = "stream-box",
    host_network: bool = False,
    **container_fields: Any,
) -> Box:
    options: dict[str, Any] = {}
    if host_network:
        options["linux"] = api_pb2.LinuxPodSandboxConfig(
            security_context=api_pb2.LinuxSandboxSecurityContext(
                namespace_options=api_pb2.NamespaceOption(network=api_pb2.NODE)
            )
        )
    sandbox_config = pod_config(log_directory=log_dir, **options)
    sandbox_id = shim.run_pod(sandbox_config)
    config = container_config(name, command or ["sleep", "100000"], **container_fields)
    container_id = shim.create_container(sandbox_id, config, sandbox_config)
    shim.start_container(container_id)
    return Box(sandbox_id, container_id, sandbox_config)


def start_web_box(shim: Shim, log_dir: str, port: int = 80, host_network: bool = False) -> Box:
    """httpd on `port` (on 127.0.0.1 only in a host-network pod), serving PAGE at / and
    BIG_FILE_BYTES random bytes at /big; returns once it answers."""
    listen = f"127.0.0.1:{port}" if host_network else str(port)
    box = start_box(
        shim,
        log_dir,
        ["/bin/sh", "-c", WEB_SCRIPT.format(port=listen)],
        name="web",
        host_network=host_network,
    )
    url = f"http://127.0.0.1:{port}/index.html"
    wait_for(
        "httpd in the pod",
        lambda: PAGE in exec_sync(shim, box.container_id, ["wget", "-q", "-O", "-", url]),
        timeout=20,
    )
    return box


# -- the shim process ---------------------------------------------------------------------------


def shim_pid(shim: Shim) -> int:
    assert shim.proc is not None and shim.proc.poll() is None, "the shim is not running"
    return shim.proc.pid


@dataclass(frozen=True)
class Resources:
    fds: int
    threads: int
    rss_kib: int

    def within(self, baseline: Resources, fds: int, threads: int) -> bool:
        return self.fds <= baseline.fds + fds and self.threads <= baseline.threads + threads


def resources(pid: int) -> Resources:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return Resources(fds, threads, rss)


def fd_kinds(pid: int) -> dict[str, int]:
    """The process's open fds counted by what they are (socket, pipe, anon_inode:..., or a
    path), to name what a leak leaks."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":[", 1)[0] if ":[" in target else target
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def settled_resources(pid: int, quiet_s: float = 1.5, timeout: float = 30) -> Resources:
    """The shim's counts once they have stopped changing for `quiet_s` (sessions that just
    ended are still being torn down for a moment)."""
    deadline = time.monotonic() + timeout
    last = resources(pid)
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = resources(pid)
        if (now.fds, now.threads) != (last.fds, last.threads):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    return last


def streaming_log(shim: Shim, lines: int = 20) -> str:
    """The last lines the shim's streaming server logged: why it ended a session."""
    kept = [line for line in shim.log().splitlines() if "shim.streaming" in line]
    return "\n".join(kept[-lines:])


# -- clients ------------------------------------------------------------------------------------


def crictl_command(shim: Shim, *args: str) -> list[str]:
    """crictl on this test's shim only: both endpoints given, and no config file read (an
    /etc/crictl.yaml on the host could point it elsewhere)."""
    crictl = tool("crictl")
    assert crictl, "crictl is not installed (make test-tools)"
    return [
        crictl,
        "--config",
        os.devnull,
        "--runtime-endpoint",
        shim.endpoint,
        "--image-endpoint",
        shim.endpoint,
        "--timeout",
        "30s",
        *args,
    ]


class Tmux:
    """A private tmux server (its own socket), a fixed-size window without a status line,
    panes kept after their command exits so that what it printed last can be read."""

    def __init__(self) -> None:
        binary = shutil.which("tmux")
        assert binary, "tmux is not installed (scripts/setup-host.sh installs it)"
        self._dir = tempfile.mkdtemp(prefix="crishim-tmux-")
        self.socket = os.path.join(self._dir, "sock")
        conf = os.path.join(self._dir, "tmux.conf")
        with open(conf, "w") as f:
            f.write("set -g status off\nset -g remain-on-exit on\nset -g history-limit 5000\n")
        self._base = [binary, "-S", self.socket, "-f", conf]

    def run(self, *args: str) -> str:
        out = subprocess.run(
            [*self._base, *args], capture_output=True, text=True, check=True, timeout=30
        )
        return out.stdout

    def start(self, command: list[str], width: int, height: int, name: str = "s") -> str:
        # The pane's shell writes the command's exit status where `exit_status` reads it
        # (to a temporary name first: a reader must not see an empty file).
        status = self._status_path(name)
        line = f"TERM=xterm {shlex.join(command)}; echo $? > {status}.tmp; mv {status}.tmp {status}"
        self.run("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), line)
        return name

    def send_line(self, text: str, target: str = "s") -> None:
        self.run("send-keys", "-t", target, "-l", text)
        self.run("send-keys", "-t", target, "Enter")

    def screen(self, target: str = "s") -> str:
        return self.run("capture-pane", "-p", "-J", "-S", "-", "-t", target)

    def wait_screen(self, needle: str, timeout: float = 20, target: str = "s") -> str:
        def shown() -> str | None:
            text = self.screen(target)
            return text if needle in text else None

        try:
            return wait_for(f"{needle!r} on the terminal", shown, timeout)
        except TimeoutError as err:
            raise TimeoutError(f"{err}; the terminal shows:\n{self.screen(target)}") from None

    def wait_stty_size(self, rows: int, cols: int, timeout: float = 20, target: str = "s") -> None:
        """Until the shell in the pane reports this size. A resize travels (SIGWINCH, the
        client, the stream, Docker's resize call) while the shell may already be answering:
        ask again until the answer is the new size."""
        deadline = time.monotonic() + timeout
        expected = f"size-is-{rows}x{cols}"
        while True:
            self.send_line("echo size-is-$(stty size | tr ' ' x)", target)
            try:
                self.wait_screen(expected, timeout=1, target=target)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def resize(self, width: int, height: int, target: str = "s") -> None:
        self.run("resize-window", "-t", target, "-x", str(width), "-y", str(height))

    def pane(self, fmt: str, target: str = "s") -> str:
        return self.run("display-message", "-p", "-t", target, fmt).strip()

    def exit_status(self, timeout: float = 20, target: str = "s") -> int:
        """The pane command's exit status, once it has exited."""
        path = self._status_path(target)
        wait_for("crictl to exit", lambda: os.path.exists(path), timeout)
        with open(path) as f:
            return int(f.read())

    def _status_path(self, name: str) -> str:
        return os.path.join(self._dir, f"status-{name}")

    def close(self) -> None:
        subprocess.run([*self._base, "kill-server"], capture_output=True, check=False)
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    try:
        yield t
    finally:
        t.close()
