"""A real etcd for tests: started on free ports with a throwaway data dir, stopped and removed
however the test ends. Not a test module; the overlay tests and the netns harness import it.

    from tests.overlay.etcd_server import etcd_server

    with etcd_server() as etcd:                       # plain HTTP on 127.0.0.1
        client = EtcdClient(etcd.endpoints)
    with etcd_server(tls=True) as etcd:               # https, client certificates required
        EtcdClient(etcd.endpoints, cafile=etcd.tls.ca, certfile=etcd.tls.client_cert,
                   keyfile=etcd.tls.client_key)
    with etcd_server(netns="store", host="192.0.2.254") as etcd:   # inside a netns
        ...

`etcd_server()` yields an `EtcdServer` that is already healthy. In a netns, the ports default
to 2379/2380 (a fresh namespace has them free) and `host` must be an address of that
namespace. `EtcdServer.stop()` and `.start()` make an outage and end it (same ports, same data);
`.post(path, body)` calls the JSON gateway from the server's namespace (for set-up steps such
as users, auth or compaction); `.log()` is etcd's own output. Everything lives in one temporary
directory (data, log, certificates), removed on exit. `OVERLAY_TEST_ETCD=/path/to/etcd` runs
another etcd build than Debian's `/usr/bin/etcd` (3.4), e.g. a 3.6.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from shim.process import stop_process

# Debian's etcd 3.4 unless the environment names another build (e.g. a 3.6 to check with).
ETCD = os.environ.get("OVERLAY_TEST_ETCD", "/usr/bin/etcd")

# Runs in the server's namespace: one gateway request, prints the body, exit 1 on failure.
_REQUEST_SCRIPT = """
import json, ssl, sys, urllib.request
url, body, ca, cert, key, timeout = sys.argv[1:7]
context = None
if url.startswith("https:"):
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
data = body.encode() if body else None
request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
try:
    with urllib.request.urlopen(request, timeout=float(timeout), context=context) as response:
        sys.stdout.write(response.read().decode())
except urllib.error.HTTPError as err:
    sys.stdout.write(err.read().decode()); sys.exit(1)
except Exception as err:
    sys.stdout.write(json.dumps({"error": str(err)})); sys.exit(1)
"""


@dataclass(frozen=True)
class EtcdTLS:
    """Paths of the PEM files made for a TLS server (one CA signs server and client)."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _run(cmd: Sequence[str], timeout: float = 30) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def make_tls(directory: Path, host: str) -> EtcdTLS:
    """A CA, a server certificate for `host` (and localhost), and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl = ("openssl",)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

    def path(name: str) -> str:
        return str(directory / name)

    _run(
        [
            *openssl, "req", "-x509", *ec, "-keyout", path("ca.key"), "-out", path("ca.crt"),
            "-days", "2", "-subj", "/CN=cri-shim test etcd CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )  # fmt: skip
    # etcd 3.4's gateway dials its own gRPC port with the server certificate, so the server
    # certificate must be good for client auth as well.
    leafs = {
        "server": f"subjectAltName=IP:{host},DNS:localhost,IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
        "client": "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    }
    for name, extensions in leafs.items():
        Path(path(f"{name}.ext")).write_text(extensions)
        _run([*openssl, "req", *ec, "-keyout", path(f"{name}.key"), "-out", path(f"{name}.csr"),
              "-subj", f"/CN=cri-shim-test-etcd-{name}"])  # fmt: skip
        _run([*openssl, "x509", "-req", "-in", path(f"{name}.csr"), "-CA", path("ca.crt"),
              "-CAkey", path("ca.key"), "-CAcreateserial", "-days", "2",
              "-extfile", path(f"{name}.ext"), "-out", path(f"{name}.crt")])  # fmt: skip
    return EtcdTLS(
        ca=path("ca.crt"),
        server_cert=path("server.crt"),
        server_key=path("server.key"),
        client_cert=path("client.crt"),
        client_key=path("client.key"),
    )


def _netns_prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def free_ports(host: str, count: int) -> list[int]:
    """Ports free on `host` now (in the current namespace); bound together so they differ."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(family, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


class EtcdServer:
    """One single-member etcd cluster; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        *,
        host: str,
        client_port: int,
        peer_port: int,
        netns: str | None = None,
        tls: EtcdTLS | None = None,
        name: str = "cri-shim-test",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.client_port = client_port
        self.peer_port = peer_port
        self.netns = netns
        self.tls = tls
        self.name = name
        # Unique, so start() can tell this server from another one on the same address.
        self.member_name = f"{name}-{uuid.uuid4().hex[:8]}"
        self.extra_args = list(extra_args)
        self.data_dir = workdir / "data"
        self.log_path = workdir / "etcd.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def client_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.peer_port}"

    @property
    def endpoints(self) -> list[str]:
        return [self.client_url]

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.poll() is None else None

    def command(self) -> list[str]:
        cmd = [
            *_netns_prefix(self.netns),
            ETCD,
            f"--name={self.member_name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.member_name}={self.peer_url}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token={self.member_name}",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        if self.tls:
            cmd += [
                f"--cert-file={self.tls.server_cert}",
                f"--key-file={self.tls.server_key}",
                f"--trusted-ca-file={self.tls.ca}",
                "--client-cert-auth",
            ]
        return cmd + self.extra_args

    def start(self, timeout: float = 30.0) -> None:
        """Start etcd (again) and wait until `/health` says it serves; raise with its log if not."""
        if self.pid is not None:
            raise RuntimeError(f"etcd {self.name} is already running (pid {self.pid})")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process' life
        process = self._process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.stop()
                raise RuntimeError(f"etcd exited with {process.returncode}:\n{self.log()}")
            ok, last = self._request("/health", None, timeout=1.0)
            if ok and json.loads(last).get("health") == "true":
                # Healthy, but is it ours? With a port given by the caller, another etcd may
                # hold it; the member list names the member that answers.
                ok, members = self._request("/v3/cluster/member/list", "{}", timeout=2.0)
                names = [m.get("name") for m in json.loads(members).get("members", [])]
                if ok and self.member_name in names:
                    return
                last = f"another etcd answers on {self.client_url}: members {names}"
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"etcd not healthy within {timeout} s ({last}):\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; idempotent. The data dir is kept for `start()`."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self, tail: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-tail:])

    def post(self, path: str, body: Mapping[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """POST `body` to the JSON gateway (`path` like "/v3/kv/compaction"); the JSON answer."""
        ok, text = self._request(path, json.dumps(body), timeout=timeout)
        if not ok:
            raise RuntimeError(f"etcd gateway {path} failed: {text}")
        answer = json.loads(text)
        assert isinstance(answer, dict)
        return answer

    def _request(self, path: str, body: str | None, timeout: float) -> tuple[bool, str]:
        tls = self.tls
        cmd = [
            *_netns_prefix(self.netns),
            sys.executable,
            "-c",
            _REQUEST_SCRIPT,
            self.client_url + path,
            body or "",
            tls.ca if tls else "",
            tls.client_cert if tls else "",
            tls.client_key if tls else "",
            str(timeout),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            return False, "request timed out"
        return proc.returncode == 0, proc.stdout or proc.stderr


@contextlib.contextmanager
def etcd_server(
    *,
    netns: str | None = None,
    host: str = "127.0.0.1",
    tls: bool = False,
    client_port: int | None = None,
    peer_port: int | None = None,
    name: str = "cri-shim-test",
    extra_args: Sequence[str] = (),
    start_timeout: float = 30.0,
) -> Iterator[EtcdServer]:
    """A healthy etcd for the `with` block; stopped and its directory removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="cri-shim-etcd-"))
    server: EtcdServer | None = None
    try:
        if client_port is None or peer_port is None:
            # A fresh namespace has etcd's own ports free; here they may be taken.
            ports = [2379, 2380] if netns else free_ports(host, 2)
            client_port = client_port or ports[0]
            peer_port = peer_port or ports[1]
        server = EtcdServer(
            workdir,
            host=host,
            client_port=client_port,
            peer_port=peer_port,
            netns=netns,
            tls=make_tls(workdir / "tls", host) if tls else None,
            name=name,
            extra_args=extra_args,
        )
        server.start(timeout=start_timeout)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
