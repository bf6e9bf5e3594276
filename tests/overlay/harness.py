"""Nodes on one machine: network namespaces for the underlay, the store, the nodes and the pods.

Layout (CROSS-NODE.md §6), every name carrying this run's random prefix:

    <p>-fab    bridge br0 = the underlay; also holds OUTSIDE_IP, an address outside the cluster
    <p>-store  etcd on STORE_IP:2379, eth0 into br0
    <p>-nN     node N: eth0 (UNDERLAY.N) into br0, our daemon under `ip netns exec`, cni0, pods
    <p>-nNpK   pod K of node N, wired by OUR CNI plugins (seed's 10-flannel.conflist) run by
               `ip netns exec <p>-nN cnitool add cbr0 /run/netns/<p>-nNpK`

The root namespace is never a node here (the root network owns 192.0.2.0/24 on this machine and
may hold a cni0 of its own), so the underlay is a benchmarking range of our own, 198.18.7.0/24.
Each node has its own subnet file, conf dir, flannel and host-local data dirs and CNI cache, as
files are shared across simulated nodes (pitfall 7). Everything a simulation made is listed as
it is made and removed by `close()`, which the fixtures call even when a test fails.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netplugins.install import install
from shim.process import stop_process
from tests.overlay.etcd_server import EtcdServer

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CNITOOL = str(Path(PYTHON).with_name("cnitool"))
UNDERLAY_PREFIX = "198.18.7"
UNDERLAY_LEN = 24
STORE_IP = f"{UNDERLAY_PREFIX}.250"
OUTSIDE_IP = f"{UNDERLAY_PREFIX}.254"  # on the fab bridge: "the internet" for masquerade tests
ETCD_PORT = 2379
PREFIX = "/coreos.com/network"
NETWORK = "10.244.0.0/16"
VXLAN_CONFIG: dict[str, Any] = {"Network": NETWORK, "Backend": {"Type": "vxlan"}}
HOSTGW_CONFIG: dict[str, Any] = {"Network": NETWORK, "Backend": {"Type": "host-gw"}}


class HarnessError(Exception):
    pass


def host_missing() -> str | None:
    """Why this host cannot run the simulation (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not shutil.which("etcd"):
        return "etcd-server could not be installed (no etcd on PATH; scripts/setup-host.sh)"
    return None


def new_workdir() -> Path:
    """A fresh directory for one simulation (Simulation.close removes it)."""
    return Path(tempfile.mkdtemp(prefix="ovl", dir="/tmp"))


def run(
    *cmd: str, check: bool = True, timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    if check and done.returncode != 0:
        raise HarnessError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def ns_run(ns: str, *cmd: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run("ip", "netns", "exec", ns, *cmd, **kwargs)


def probe_cmd(*args: str) -> list[str]:
    return [PYTHON, "-m", "tests.overlay.probe", *args]


def probe(ns: str, *args: str, timeout: float = 30) -> tuple[int, dict[str, Any]]:
    """Run a client probe in `ns`; its exit status and the JSON line it printed."""
    done = run("ip", "netns", "exec", ns, *probe_cmd(*args), check=False, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise HarnessError(f"probe {args} in {ns} printed nothing: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(lines[-1])
    return done.returncode, result


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float = 10,
    interval: float = 0.1,
    log: Node | None = None,
) -> float:
    """Poll `check` until true; the seconds it took. Raises naming `what` on timeout, with the
    tail of `log`'s daemon log when given."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            tail = f"\n{log.ns or 'root'} daemon log:\n{log.log()[-3000:]}" if log else ""
            raise HarnessError(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(interval)


class Server:
    """A server probe in the background; `close()` kills it and returns what it printed."""

    def __init__(self, ns: str, *args: str, log: Path) -> None:
        self.log = log
        self._out = open(log, "w+")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *probe_cmd(*args)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        wait_for(f"probe {args} in {ns} to be ready", lambda: "ready" in self.log.read_text())

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{") and "ready" not in line:
                out.append(json.loads(line))
        return out

    def close(self) -> list[dict[str, Any]]:
        stop_process(self.proc, sig=signal.SIGKILL)
        self._out.close()
        return self.events()


@dataclass
class Pod:
    name: str  # its netns
    node: Node
    ip: str
    container_id: str


@dataclass
class Node:
    """One simulated node: its namespace, its files and its daemon."""

    sim: Simulation
    index: int
    ns: str
    public_ip: str
    workdir: Path
    bridge: str = "cni0"
    iface: str = "eth0"
    proc: subprocess.Popen[bytes] | None = None
    pods: list[Pod] = field(default_factory=list)
    daemon_args: list[str] = field(default_factory=list)
    _stale_subnet_file: tuple[int, int] | None = None

    @property
    def subnet_file(self) -> Path:
        return self.workdir / "subnet.env"

    @property
    def conf_dir(self) -> Path:
        return self.workdir / "net.d"

    @property
    def log_path(self) -> Path:
        return self.workdir / "pyflanneld.log"

    def exec(self, *cmd: str, check: bool = True, timeout: float = 30) -> str:
        return self._run(*cmd, check=check, timeout=timeout).stdout

    def _run(self, *cmd: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if self.ns:
            return ns_run(self.ns, *cmd, **kwargs)
        return run(*cmd, **kwargs)

    # -- the daemon ---------------------------------------------------------------------

    def daemon_command(self, *extra: str) -> list[str]:
        cmd = [
            PYTHON,
            "-m",
            "overlay",
            "--etcd-endpoints",
            f"http://{STORE_IP}:{ETCD_PORT}",
            "--etcd-prefix",
            self.sim.prefix_key,
            "--iface",
            self.iface,
            "--subnet-file",
            str(self.subnet_file),
            "--iptables-resync",
            "1",
            "-v",
            "2",
            *extra,
        ]
        return ["ip", "netns", "exec", self.ns, *cmd] if self.ns else cmd

    def start(self, *extra: str, wait: bool = True) -> None:
        """Start our daemon in the node netns (`ip netns exec` execs it, so the pid is ours)."""
        if self.proc is not None and self.proc.poll() is None:
            raise HarnessError(f"daemon of {self.ns} already runs")
        self.daemon_args = list(extra)
        self._stale_subnet_file = _file_identity(self.subnet_file)
        log = open(self.log_path, "a")  # noqa: SIM115 - handed to the child
        log.write(f"--- start {' '.join(extra)}\n")
        log.flush()
        self.proc = subprocess.Popen(
            self.daemon_command(*extra), stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(
                    f"daemon of {self.ns} exited {self.proc.returncode}:\n{self.log()}"
                )
            # A file left by the previous run does not count: each start writes it anew.
            identity = _file_identity(self.subnet_file)
            return identity is not None and identity != self._stale_subnet_file

        wait_for(f"subnet.env of {self.ns or 'root'}", ready, timeout=timeout)

    def restart(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop and start again with the same flags; the stopped daemon's exit status."""
        code = self.stop(sig)
        self.start(*self.daemon_args)
        return code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Stop the daemon; its exit status (None when it was not running)."""
        if self.proc is None:
            return None
        code = stop_process(self.proc, timeout=timeout, sig=sig)
        self.proc = None
        return code

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except FileNotFoundError:
            return ""

    def subnet_env(self) -> dict[str, str]:
        out = {}
        for line in self.subnet_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = value.strip()
        return out

    @property
    def subnet(self) -> str:
        """This node's lease as `10.244.N.0/24`."""
        first = self.subnet_env()["FLANNEL_SUBNET"]  # 10.244.N.1/24
        address, length = first.split("/")
        return f"{address.rsplit('.', 1)[0]}.0/{length}"

    @property
    def vtep_ip(self) -> str:
        return self.subnet.split("/")[0]

    # -- kernel state -------------------------------------------------------------------

    def ip_json(self, *args: str) -> list[dict[str, Any]]:
        out = self.exec("ip", "-j", *args).strip()
        value: list[dict[str, Any]] = json.loads(out) if out else []
        return value

    def vtep(self) -> dict[str, Any] | None:
        done = self._run("ip", "-d", "-j", "addr", "show", "dev", self.sim.vtep_name, check=False)
        if done.returncode != 0 or not done.stdout.strip():
            return None
        links: list[dict[str, Any]] = json.loads(done.stdout)
        return links[0]

    def routes(self) -> list[dict[str, Any]]:
        return self.ip_json("-4", "route", "show")

    def neighbours(self) -> list[dict[str, Any]]:
        return self.ip_json("-4", "neigh", "show", "dev", self.sim.vtep_name)

    def fdb(self) -> list[dict[str, Any]]:
        out = self.exec("bridge", "-j", "fdb", "show", "dev", self.sim.vtep_name).strip()
        value: list[dict[str, Any]] = json.loads(out) if out else []
        return value

    def conntrack(self) -> list[tuple[str, str, str, str, str]]:
        """(protocol, original src, original dst, reply src, reply dst) of each IPv4 entry in
        this node's conntrack table (per netns; there is no conntrack tool on this host)."""
        entries = []
        for line in self.exec("cat", "/proc/net/nf_conntrack").splitlines():
            fields = line.split()
            if not fields or fields[0] != "ipv4":
                continue
            src = [f[4:] for f in fields if f.startswith("src=")]
            dst = [f[4:] for f in fields if f.startswith("dst=")]
            if len(src) == 2 and len(dst) == 2:
                entries.append((fields[2], src[0], dst[0], src[1], dst[1]))
        return entries

    def iptables_save(self, table: str) -> str:
        return self.exec("iptables-save", "-t", table)

    # -- pods -----------------------------------------------------------------------------

    def cni_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "NETCONFPATH": str(self.conf_dir),
            "CNI_PATH": str(self.sim.plugin_dir),
            "CNI_CACHE_DIR": str(self.workdir / "cni-cache"),
        }

    def write_conflist(self, delegate_extra: dict[str, Any] | None = None) -> Path:
        """The seed's 10-flannel.conflist; only this node's paths (and bridge) filled in."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        delegate: dict[str, Any] = {"hairpinMode": True, "isDefaultGateway": True}
        if self.bridge != "cni0":
            delegate["bridge"] = self.bridge
        delegate.update(delegate_extra or {})
        conflist = {
            "name": "cbr0",
            "cniVersion": "0.3.1",
            "plugins": [
                {
                    "type": "flannel",
                    "delegate": delegate,
                    "subnetFile": str(self.subnet_file),
                    "dataDir": str(self.workdir / "flannel-data"),
                    "ipam": {"dataDir": str(self.workdir / "ipam")},
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        path = self.conf_dir / "10-flannel.conflist"
        path.write_text(json.dumps(conflist, indent=1))
        return path

    def add_pod(self) -> Pod:
        name = f"{self.ns}p{len(self.pods) + 1}"
        self.sim.add_netns(name)
        if not (self.conf_dir / "10-flannel.conflist").exists():
            self.write_conflist()
        env = {**self.cni_env(), "CNI_CONTAINERID": name, "CNI_ARGS": f"K8S_POD_NAME={name}"}
        cmd = [CNITOOL, "add", "cbr0", f"/run/netns/{name}"]
        done = self._run(*cmd, env=env, timeout=60)
        result = json.loads(done.stdout)
        ip = result["ips"][0]["address"].split("/")[0]
        pod = Pod(name=name, node=self, ip=ip, container_id=name)
        self.pods.append(pod)
        return pod

    def del_pod(self, pod: Pod) -> None:
        env = {**self.cni_env(), "CNI_CONTAINERID": pod.container_id}
        self._run(CNITOOL, "del", "cbr0", f"/run/netns/{pod.name}", env=env, check=False)
        self.pods.remove(pod)


class Simulation:
    """fab + store (etcd) + nodes; `close()` removes every namespace, process and file."""

    def __init__(self, workdir: Path, vni: int = 1) -> None:
        self.workdir = workdir
        self.run_id = secrets.token_hex(2)
        self.tag = f"ovl{self.run_id}"  # <= 7 chars so node/pod/veth names fit IFNAMSIZ
        self.prefix_key = PREFIX
        self.vtep_name = f"flannel.{vni}"
        self.namespaces: list[str] = []
        self.nodes: dict[int, Node] = {}
        self.etcd: EtcdServer | None = None
        self.plugin_dir = workdir / "cni-bin"
        self.cleanups: list[Callable[[], object]] = []
        install(str(self.plugin_dir))
        self.fab = self.add_netns(f"{self.tag}-fab")
        ns_run(self.fab, "ip", "link", "add", "br0", "type", "bridge")
        ns_run(self.fab, "ip", "addr", "add", f"{OUTSIDE_IP}/{UNDERLAY_LEN}", "dev", "br0")
        ns_run(self.fab, "ip", "link", "set", "br0", "up")
        self.store = self.add_netns(f"{self.tag}-st")
        self._plug(self.store, f"{STORE_IP}/{UNDERLAY_LEN}", f"{self.tag}st")

    # -- namespaces -----------------------------------------------------------------------

    def add_netns(self, name: str) -> str:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        ns_run(name, "ip", "link", "set", "lo", "up")
        return name

    def _plug(self, ns: str, address: str, fab_end: str) -> None:
        """A veth `eth0` in `ns` whose peer `fab_end` is a port of the fab bridge."""
        run("ip", "-n", self.fab, "link", "add", fab_end, "type", "veth", "peer", "name", "eth0",
            "netns", ns)  # fmt: skip
        ns_run(self.fab, "ip", "link", "set", fab_end, "master", "br0", "up")
        ns_run(ns, "ip", "addr", "add", address, "dev", "eth0")
        ns_run(ns, "ip", "link", "set", "eth0", "up")

    # -- etcd -----------------------------------------------------------------------------

    def start_etcd(self) -> None:
        """etcd in the store namespace on STORE_IP (tests/overlay/etcd_server.py runs it);
        the same data dir across stop/start, so an outage keeps the leases."""
        if self.etcd is None:
            self.etcd = EtcdServer(
                self.workdir / "etcd",
                host=STORE_IP,
                client_port=ETCD_PORT,
                peer_port=ETCD_PORT + 1,
                netns=self.store,
                name=f"{self.tag}-store",
            )
            (self.workdir / "etcd").mkdir(exist_ok=True)
        self.etcd.start(timeout=20)

    def stop_etcd(self) -> None:
        if self.etcd is not None:
            self.etcd.stop()

    def etcd_call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One JSON-gateway call (etcd ≥ 3.4 `/v3/`) on a connection made inside the store
        namespace (no etcdctl on this host; a process per call would be slow in polls)."""
        conn = NetnsHTTPConnection(self.store, STORE_IP, ETCD_PORT, timeout=5)
        try:
            conn.request("POST", f"/v3/{path}", json.dumps(body))
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise HarnessError(f"etcd {path} {body}: {response.status} {data[:300]!r}")
        value: dict[str, Any] = json.loads(data)
        return value

    def put(self, key: str, value: str, lease: int = 0) -> None:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        self.etcd_call("kv/put", body)

    def delete(self, key: str) -> None:
        self.etcd_call("kv/deleterange", {"key": _b64(key)})

    def put_config(self, config: dict[str, Any] | str) -> None:
        value = config if isinstance(config, str) else json.dumps(config)
        self.put(f"{self.prefix_key}/config", value)

    def leases(self) -> dict[str, tuple[dict[str, Any], int]]:
        """`10.244.N.0-24` → (value, etcd lease id; 0 = none) for every key under subnets/."""
        prefix = f"{self.prefix_key}/subnets/"
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        out = self.etcd_call("kv/range", {"key": _b64(prefix), "range_end": _b64(end)})
        found: dict[str, tuple[dict[str, Any], int]] = {}
        for kv in out.get("kvs", []):
            key = base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1]
            value = json.loads(base64.b64decode(kv["value"]))
            found[key] = (value, int(kv.get("lease", 0)))  # proto3 JSON omits lease 0
        return found

    def lease_ttl(self, lease_id: int) -> int:
        out = self.etcd_call("lease/timetolive", {"ID": str(lease_id)})
        return int(out["TTL"])

    def grant(self, ttl: int) -> int:
        return int(self.etcd_call("lease/grant", {"TTL": str(ttl)})["ID"])

    def revision(self) -> int:
        out = self.etcd_call("kv/range", {"key": _b64(f"{self.prefix_key}/config")})
        return int(out["header"]["revision"])

    def compact(self) -> int:
        """Compact up to the current revision: watches from older revisions are refused."""
        rev = self.revision()
        self.etcd_call("kv/compaction", {"revision": str(rev), "physical": True})
        return rev

    # -- nodes ----------------------------------------------------------------------------

    def add_node(self, index: int) -> Node:
        ns = self.add_netns(f"{self.tag}-n{index}")
        public_ip = f"{UNDERLAY_PREFIX}.{index}"
        self._plug(ns, f"{public_ip}/{UNDERLAY_LEN}", f"{self.tag}n{index}")
        # New netns inherit IPv4 conf/all from the root (pitfall 2): say what a node needs.
        for key, value in (
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", "1"),
            ("net.ipv4.conf.default.rp_filter", "1"),
        ):
            ns_run(ns, "sysctl", "-qw", f"{key}={value}")
        workdir = self.workdir / f"n{index}"
        workdir.mkdir(parents=True)
        node = Node(sim=self, index=index, ns=ns, public_ip=public_ip, workdir=workdir)
        self.nodes[index] = node
        return node

    def add_root_node(self, index: int, bridge: str) -> Node:
        """The root namespace as one more node (issue 11 proof 10): a veth of the test's own
        into the fab, an address of the underlay, a bridge name of its own. Refuses when the
        root already has flannel state, which cleanup could not tell from ours."""
        left = root_flannel_state()
        if left:
            raise HarnessError(f"the root namespace already has flannel state: {left}")
        veth, peer = f"{self.tag}r", f"{self.tag}rf"
        public_ip = f"{UNDERLAY_PREFIX}.{index}"
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer, "netns", self.fab)
        workdir = self.workdir / f"n{index}"
        workdir.mkdir(parents=True)
        node = Node(
            sim=self, index=index, ns="", public_ip=public_ip, workdir=workdir, bridge=bridge,
            iface=veth,
        )  # fmt: skip
        self.cleanups.append(lambda: clean_root_node(node))
        ns_run(self.fab, "ip", "link", "set", peer, "master", "br0", "up")
        run("ip", "addr", "add", f"{public_ip}/{UNDERLAY_LEN}", "dev", veth)
        run("ip", "link", "set", veth, "up")
        self.nodes[index] = node
        return node

    def wait_converged(self, timeout: float = 15) -> float:
        """Until every running node has a route to each other running node's subnet."""

        def converged() -> bool:
            running = [n for n in self.nodes.values() if n.running() and n.subnet_file.exists()]
            for node in running:
                dsts = {r["dst"] for r in node.routes()}
                if any(peer.subnet not in dsts for peer in running if peer is not node):
                    return False
            return True

        return wait_for("routes to every peer", converged, timeout=timeout)

    def server(self, ns: str, *args: str) -> Server:
        log = self.workdir / f"server-{secrets.token_hex(3)}.log"
        server = Server(ns, *args, log=log)
        self.cleanups.append(server.close)
        return server

    # -- cleanup --------------------------------------------------------------------------

    def close(self) -> None:
        errors: list[str] = []
        # Daemons first: one in the root namespace would recreate what the cleanups remove.
        for node in self.nodes.values():
            node.stop(signal.SIGKILL, timeout=5)
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # every step runs; the errors are reported at the end
                errors.append(f"{cleanup}: {exc}")
        self.stop_etcd()
        for ns in reversed(self.namespaces):
            done = run("ip", "netns", "del", ns, check=False)
            if done.returncode and "No such file" not in done.stderr:
                errors.append(f"netns {ns}: {done.stderr.strip()}")
        self.namespaces.clear()
        left = [n for n in list_netns() if n.startswith(self.tag)]
        if left:
            errors.append(f"namespaces left: {left}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise HarnessError("; ".join(errors))


UDP_PORT = 7001
TCP_PORT = 7002


def seen_sources(sim: Simulation, src_ns: str, dst_ns: str, dst_ip: str) -> dict[str, str]:
    """The source address the receiver in `dst_ns` saw for ICMP, UDP and TCP from `src_ns`
    ("" when that traffic did not arrive)."""
    seen: dict[str, str] = {}
    listener = sim.server(dst_ns, "icmp-listen", "--timeout", "5")
    code, _ = probe(src_ns, "ping", dst_ip, "--count", "3", "--timeout", "1")
    events = listener.close()
    seen["icmp"] = events[0]["source"] if code == 0 and events else ""
    udp = sim.server(dst_ns, "udp-server", str(UDP_PORT), "--timeout", "5")
    code, reply = probe(src_ns, "udp-send", dst_ip, str(UDP_PORT))
    udp.close()
    seen["udp"] = reply.get("seen_as", "") if code == 0 else ""
    tcp = sim.server(dst_ns, "tcp-server", str(TCP_PORT), "--timeout", "5")
    code, reply = probe(src_ns, "tcp-connect", dst_ip, str(TCP_PORT))
    tcp.close()
    seen["tcp"] = reply.get("seen_as", "") if code == 0 else ""
    return seen


def reachable(src_ns: str, dst_ip: str, size: int = 84, df: bool = False) -> bool:
    args = ["ping", dst_ip, "--count", "2", "--timeout", "1", "--size", str(size)]
    code, _ = probe(src_ns, *args, *(["--df"] if df else []))
    return code == 0


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def connect_in_netns(ns: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection from inside netns `ns`, made on a throwaway thread: setns(2) moves
    only the calling thread, and a socket keeps the namespace it was created in."""
    made: dict[str, Any] = {}

    def connect() -> None:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {ns}")
            made["sock"] = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            made["error"] = exc
        finally:
            os.close(fd)

    thread = threading.Thread(target=connect, name=f"connect-in-{ns}")
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]
    sock: socket.socket = made["sock"]
    return sock


class NetnsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, ns: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.ns = ns

    def connect(self) -> None:
        self.sock = connect_in_netns(self.ns, self.host, self.port, self.timeout or 5.0)


FLANNEL_CHAINS = (("filter", "FORWARD", "FLANNEL-FWD"), ("nat", "POSTROUTING", "FLANNEL-POSTRTG"))


def root_flannel_state() -> list[str]:
    """flannel devices and FLANNEL-* chains in the root namespace (none may be left)."""
    found = [
        link["ifname"]
        for link in json.loads(run("ip", "-j", "link", "show").stdout or "[]")
        if link["ifname"].startswith("flannel")
    ]
    for table, _, chain in FLANNEL_CHAINS:
        if f":{chain} " in run("iptables-save", "-t", table).stdout:
            found.append(f"{table}/{chain}")
    return found


def clean_root_node(node: Node) -> None:
    """Remove what the root node's daemon and pods made: only our device names and chains
    (add_root_node checked that none existed before), the test's veth and bridge."""
    run("ip", "link", "del", node.sim.vtep_name, check=False)
    run("ip", "link", "del", node.iface, check=False)
    run("ip", "link", "del", node.bridge, check=False)
    for table, parent, chain in FLANNEL_CHAINS:
        for line in run("iptables-save", "-t", table).stdout.splitlines():
            if line.startswith(f"-A {parent} ") and line.endswith(f"-j {chain}"):
                run("iptables", "-w", "-t", table, "-D", *shlex.split(line)[1:], check=False)
        run("iptables", "-w", "-t", table, "-F", chain, check=False)
        run("iptables", "-w", "-t", table, "-X", chain, check=False)


def list_netns() -> list[str]:
    out = run("ip", "-j", "netns", "list", check=False).stdout.strip()
    return [entry["name"] for entry in json.loads(out)] if out else []


@contextlib.contextmanager
def simulation(workdir: Path, nodes: int = 3, config: Any = None, start: bool = True,
               daemon_args: tuple[str, ...] = ()) -> Iterator[Simulation]:  # fmt: skip
    """A simulation with etcd up, the config stored and `nodes` nodes, their daemons started
    one after the other (so their subnets are known) unless `start` is false."""
    sim = Simulation(workdir)
    try:
        sim.start_etcd()
        if config is not None:
            sim.put_config(config)
        for index in range(1, nodes + 1):
            node = sim.add_node(index)
            if start:
                node.start(*daemon_args)
        if start and nodes > 1:
            sim.wait_converged()
        yield sim
    finally:
        sim.close()


@contextlib.contextmanager
def vxlan_with_pods(nodes: int = 3) -> Iterator[Simulation]:
    """The simulation most cross-node tests share: `nodes` VXLAN nodes whose daemons run with
    `--ip-masq`, one pod on each, in a fresh workdir."""
    with simulation(new_workdir(), nodes, config=VXLAN_CONFIG, daemon_args=("--ip-masq",)) as sim:
        for node in sim.nodes.values():
            node.add_pod()
        yield sim
