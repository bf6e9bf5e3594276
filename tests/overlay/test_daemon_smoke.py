"""A quick end-to-end check of pyflanneld on one node namespace with a real etcd: subnet.env,
the lease in flannel's format with the VTEP's real MAC, the VTEP device, a peer's three
entries coming and going with its lease, stale entries removed at start-up, a deleted VTEP
restored, iptables chains, exit codes. The three-node proofs live beside it (harness.py)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shim.process import stop_process
from tests.overlay.etcd_server import EtcdServer, etcd_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/smoke.test/network"
NODE_IP = "192.0.2.10"
PEER_IP = "192.0.2.20"
PEER_MAC = "02:aa:bb:cc:dd:01"
CONFIG = {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}
HEALTHZ_PORT = 18671  # inside the test's own namespace: nothing else listens there
HEALTHZ_GET = f"""
import urllib.request
with urllib.request.urlopen("http://127.0.0.1:{HEALTHZ_PORT}/healthz", timeout=5) as r:
    print(r.status, r.read().decode().strip())
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def ns_run(ns: str, *cmd: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed: {proc.stderr}")
    return proc.stdout


def ip_json(ns: str, *args: str) -> list[dict[str, Any]]:
    out = ns_run(ns, "ip", "-j", *args).strip()
    value: list[dict[str, Any]] = json.loads(out) if out else []
    return value


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Node:
    ns: str
    workdir: Path
    etcd: EtcdServer
    proc: subprocess.Popen[bytes] | None = None

    @property
    def subnet_file(self) -> Path:
        return self.workdir / "subnet.env"

    @property
    def log_path(self) -> Path:
        return self.workdir / "daemon.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def start(self, *extra: str) -> None:
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [
                    "ip", "netns", "exec", self.ns, sys.executable, "-m", "overlay",
                    "--etcd-endpoints", self.etcd.client_url, "--etcd-prefix", PREFIX,
                    "--iface", "eth0", "--subnet-file", str(self.subnet_file),
                    "--iptables-resync", "1", *extra,
                ],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            return self.subnet_file.exists()

        wait_for("subnet.env", ready, timeout=20)

    def stop(self) -> int:
        assert self.proc is not None
        return stop_process(self.proc, timeout=15)

    def put(self, key: str, value: str) -> None:
        self.etcd.post("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def delete(self, key: str) -> None:
        self.etcd.post("/v3/kv/deleterange", {"key": _b64(key)})

    def leases(self) -> dict[str, tuple[dict[str, Any], int]]:
        start = f"{PREFIX}/subnets/"
        end = start[:-1] + chr(ord(start[-1]) + 1)
        answer = self.etcd.post("/v3/kv/range", {"key": _b64(start), "range_end": _b64(end)})
        return {
            base64.b64decode(kv["key"]).decode(): (
                json.loads(base64.b64decode(kv["value"])),
                int(kv.get("lease", 0)),
            )
            for kv in answer.get("kvs", [])
        }

    def env(self) -> dict[str, str]:
        lines = self.subnet_file.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.fixture
def node() -> Iterator[Node]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    ns = f"ovsmoke-{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="ovsmoke-"))
    subprocess.run(["ip", "netns", "add", ns], check=True)
    made: Node | None = None
    try:
        # eth0 with a peer end in the same namespace: an underlay of one link, no traffic out.
        for cmd in (
            "ip link set lo up",
            "ip link add eth0 type veth peer name eth0p",
            f"ip addr add {NODE_IP}/24 dev eth0",
            "ip link set eth0 up",
            "ip link set eth0p up",
        ):
            ns_run(ns, *cmd.split())
        with etcd_server(netns=ns, host="127.0.0.1") as etcd:
            made = Node(ns, workdir, etcd)
            made.put(f"{PREFIX}/config", json.dumps(CONFIG))
            yield made
            if made.proc is not None:
                made.stop()
    finally:
        if made is not None and made.proc is not None:
            stop_process(made.proc, sig=signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def _vtep(node: Node) -> dict[str, Any]:
    return ip_json(node.ns, "-d", "addr", "show", "dev", "flannel.1")[0]


def _peer_entries(node: Node, subnet: str) -> tuple[bool, bool, bool]:
    gateway = subnet.split("/")[0]
    routes = ip_json(node.ns, "-4", "route", "show", "proto", "241")
    route = any(
        r["dst"] == subnet and r.get("gateway") == gateway and "onlink" in r.get("flags", [])
        for r in routes
    )
    neigh = any(
        n["dst"] == gateway and n.get("lladdr") == PEER_MAC and "PERMANENT" in n.get("state", [])
        for n in ip_json(node.ns, "-4", "neigh", "show", "dev", "flannel.1")
    )
    fdb_out = ns_run(node.ns, "bridge", "-j", "fdb", "show", "dev", "flannel.1").strip()
    fdb = any(f["mac"] == PEER_MAC and f.get("dst") == PEER_IP for f in json.loads(fdb_out or "[]"))
    return route, neigh, fdb


def test_daemon_on_one_node(node: Node) -> None:
    node.start()
    node.wait_ready()
    env = node.env()
    assert env["FLANNEL_NETWORK"] == "10.244.0.0/16"
    assert env["FLANNEL_MTU"] == "1450" and env["FLANNEL_IPMASQ"] == "false"
    subnet = env["FLANNEL_SUBNET"].replace(".1/", ".0/")
    assert subnet != "10.244.0.0/24"

    # The VTEP as flannel makes it.
    vtep = _vtep(node)
    info = vtep["linkinfo"]["info_data"]
    assert vtep["mtu"] == 1450
    assert (info["id"], info["local"], info["port"], info["learning"]) == (1, NODE_IP, 8472, False)
    addrs = [(a["local"], a["prefixlen"]) for a in vtep["addr_info"] if a["family"] == "inet"]
    assert addrs == [(subnet.split("/")[0], 32)]

    # The lease: flannel's key and JSON, the real VTEP MAC, a TTL lease.
    leases = node.leases()
    key = f"{PREFIX}/subnets/{subnet.replace('/', '-')}"
    value, lease_id = leases[key]
    assert value == {
        "PublicIP": NODE_IP,
        "PublicIPv6": None,
        "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": vtep["address"]},
    }
    assert lease_id != 0

    # A peer's lease appears: three entries; it goes: they go.
    peer_subnet = "10.244.250.0/24"
    peer_key = f"{PREFIX}/subnets/10.244.250.0-24"
    peer_value = {
        "PublicIP": PEER_IP,
        "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": PEER_MAC},
    }
    node.put(peer_key, json.dumps(peer_value))
    wait_for("the peer's entries", lambda: _peer_entries(node, peer_subnet) == (True,) * 3, 5)
    node.delete(peer_key)
    wait_for(
        "the peer's entries to go", lambda: _peer_entries(node, peer_subnet) == (False,) * 3, 5
    )

    # iptables: FORWARD accepts the cluster network; no masquerade chain without --ip-masq.
    filt = ns_run(node.ns, "iptables-save", "-t", "filter")
    assert "-A FLANNEL-FWD -s 10.244.0.0/16" in filt and "-j FLANNEL-FWD" in filt
    assert "FLANNEL-POSTRTG" not in ns_run(node.ns, "iptables-save", "-t", "nat")

    # A deleted VTEP comes back with the same MAC and address.
    ns_run(node.ns, "ip", "link", "del", "flannel.1")
    wait_for(
        "flannel.1 to come back",
        lambda: any(link["ifname"] == "flannel.1" for link in ip_json(node.ns, "link", "show")),
        10,
    )
    wait_for("its address", lambda: len(_vtep(node)["addr_info"]) >= 1, 5)
    assert _vtep(node)["address"] == vtep["address"]

    # A MAC changed behind our back (udev, flannel#1795) is put back: peers hold the old one.
    ns_run(node.ns, "ip", "link", "set", "flannel.1", "address", "02:00:00:00:be:ef")
    wait_for("the published MAC back", lambda: _vtep(node)["address"] == vtep["address"], 10)
    assert node.leases()[key][0]["BackendData"]["VtepMAC"] == vtep["address"]

    # SIGTERM: exit 0, the lease and the device stay.
    assert node.stop() == 0, node.log()
    assert key in node.leases()
    assert _vtep(node)["address"] == vtep["address"]

    # While it is down, a peer leaves without a trace in etcd: its entries are stale.
    node.put(peer_key, json.dumps(peer_value))
    node.start("--ip-masq")
    node.wait_ready()
    wait_for("the peer again", lambda: _peer_entries(node, peer_subnet) == (True,) * 3, 5)
    assert node.stop() == 0
    node.delete(peer_key)
    node.subnet_file.unlink()
    node.start("--ip-masq")
    node.wait_ready()
    # Same subnet, same MAC after the restart, and the stale peer is gone before ready.
    assert node.env()["FLANNEL_SUBNET"] == env["FLANNEL_SUBNET"]
    assert node.env()["FLANNEL_IPMASQ"] == "true"
    assert _peer_entries(node, peer_subnet) == (False,) * 3
    assert node.leases()[key][0]["BackendData"]["VtepMAC"] == vtep["address"]
    nat = ns_run(node.ns, "iptables-save", "-t", "nat")
    assert "-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4" in nat

    # A changed Backend.MTU is applied to the existing device on restart (flannel#1775), and
    # the healthz server answers.
    assert node.stop() == 0
    node.put(f"{PREFIX}/config", json.dumps({**CONFIG, "Backend": {"Type": "vxlan", "MTU": 1400}}))
    node.start("--healthz-ip", "127.0.0.1", "--healthz-port", str(HEALTHZ_PORT))
    node.wait_ready()
    wait_for("the new MTU in subnet.env", lambda: node.env()["FLANNEL_MTU"] == "1350", 5)
    assert _vtep(node)["mtu"] == 1350
    healthz = ns_run(node.ns, sys.executable, "-c", HEALTHZ_GET)
    assert healthz.strip() == "200 flanneld is running"

    # Our lease deleted: the daemon exits non-zero.
    node.delete(key)
    assert node.proc is not None
    node.proc.wait(timeout=10)
    assert node.proc.returncode == 1, node.log()
    assert "Lease has been revoked" in node.log()


def _peer_value(mac: str = PEER_MAC, backend: str = "vxlan") -> str:
    data = {"BackendData": {"VNI": 1, "VtepMAC": mac}} if backend == "vxlan" else {}
    return json.dumps({"PublicIP": PEER_IP, "BackendType": backend, **data})


def test_direct_routing_uses_a_plain_route_on_one_l2(node: Node) -> None:
    node.put(
        f"{PREFIX}/config",
        json.dumps({**CONFIG, "Backend": {"Type": "vxlan", "DirectRouting": True}}),
    )
    node.start()
    node.wait_ready()
    node.put(f"{PREFIX}/subnets/10.244.250.0-24", _peer_value())

    def direct() -> bool:
        routes = ip_json(node.ns, "-4", "route", "show", "proto", "241")
        return any(
            r["dst"] == "10.244.250.0/24" and r.get("gateway") == PEER_IP and r["dev"] == "eth0"
            for r in routes
        )

    wait_for("the direct route", direct, 5)
    assert _peer_entries(node, "10.244.250.0/24")[1:] == (False, False)  # no neighbour, no FDB


def test_host_gw_routes_via_the_peer_and_restores_a_deleted_route(node: Node) -> None:
    node.put(f"{PREFIX}/config", json.dumps({**CONFIG, "Backend": {"Type": "host-gw"}}))
    # Behind NAT (public IP is not the interface's): refused with a clear error.
    node.start("--public-ip", "203.0.113.7")
    assert node.proc is not None
    assert node.proc.wait(timeout=15) == 1
    assert "public IP 203.0.113.7 is not the address 192.0.2.10 of eth0" in node.log()
    node.start()
    node.wait_ready()
    assert node.env()["FLANNEL_MTU"] == "1500"
    node.put(f"{PREFIX}/subnets/10.244.250.0-24", _peer_value(backend="host-gw"))
    # A peer that is not on our L2 is refused, not routed into the void.
    off_l2 = json.dumps({"PublicIP": "198.51.100.9", "BackendType": "host-gw"})
    node.put(f"{PREFIX}/subnets/10.244.251.0-24", off_l2)

    def routes() -> dict[str, str]:
        found = ip_json(node.ns, "-4", "route", "show", "proto", "241")
        return {r["dst"]: f"{r.get('gateway')} {r['dev']}" for r in found}

    wait_for("the host-gw route", lambda: routes() == {"10.244.250.0/24": f"{PEER_IP} eth0"}, 5)
    ns_run(node.ns, "ip", "route", "del", "10.244.250.0/24")
    wait_for("the route to come back", lambda: "10.244.250.0/24" in routes(), 5)
    assert "is not on the L2 segment of eth0" in node.log()
