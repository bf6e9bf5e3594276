"""Issue 3's interop promise, through the shim's own code path (PodNetwork, as RunPodSandbox and
StopPodSandbox use it): an attachment added with our cnitool is deleted cleanly by the shim,
and one the shim added is deleted cleanly by cnitool. Reference plugins, a namespace of our own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from shim.sandbox.network import PodNetwork
from tests.e2e.harness import veths_on

pytestmark = pytest.mark.integration

REFERENCE = "/usr/lib/cni"


@dataclass
class Setup:
    conf_dir: str
    cache_dir: str
    data_dir: str
    netns: str
    bridge: str
    network: PodNetwork

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def cnitool(self, command: str, container_id: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "NETCONFPATH": self.conf_dir,
            "CNI_PATH": REFERENCE,
            "CNI_CACHE_DIR": self.cache_dir,
            "CNI_CONTAINERID": container_id,
            "CNI_IFNAME": "eth0",
        }
        return subprocess.run(
            [sys.executable, "-m", "cnilib.cli", command, "crsci", self.netns_path],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )

    def held(self) -> tuple[list[str], list[str], list[str]]:
        """Reservations, veths on our bridge, and cache entries of our network."""
        net_dir = os.path.join(self.data_dir, "crsci")
        reserved = (
            [f for f in os.listdir(net_dir) if f.startswith("10.")]
            if os.path.isdir(net_dir)
            else []
        )
        veths = veths_on(self.bridge)
        results = os.path.join(self.cache_dir, "results")
        cached = (
            [f for f in os.listdir(results) if f.startswith("crsci-")]
            if os.path.isdir(results)
            else []
        )
        return reserved, veths, cached


@pytest.fixture
def setup() -> Iterator[Setup]:
    work = tempfile.mkdtemp(prefix="crsci-")
    conf_dir, cache_dir, data_dir = (os.path.join(work, d) for d in ("net.d", "cache", "ipam"))
    os.makedirs(conf_dir)
    bridge = f"crsci{os.getpid() % 10000}"
    with open(os.path.join(conf_dir, "10-crsci.conflist"), "w") as f:
        json.dump(
            {
                "cniVersion": "1.0.0",
                "name": "crsci",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge,
                        "isGateway": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": "10.200.251.0/24"}]],
                            "dataDir": data_dir,
                        },
                    }
                ],
            },
            f,
        )
    netns = f"crsci-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        yield Setup(
            conf_dir,
            cache_dir,
            data_dir,
            netns,
            bridge,
            PodNetwork(conf_dir, (REFERENCE,), cache_dir, 20.0),
        )
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def test_cnitool_add_then_shim_teardown(setup: Setup) -> None:
    container_id = uuid.uuid4().hex
    setup.cnitool("add", container_id)
    reserved, veths, cached = setup.held()
    assert len(reserved) == 1 and len(veths) == 1 and len(cached) == 1

    attachment = setup.network.attachment_for(setup.network.current(), [], {})
    setup.network.teardown(container_id, setup.netns_path, attachment)
    assert setup.held() == ([], [], [])


def test_shim_setup_then_cnitool_del(setup: Setup) -> None:
    container_id = uuid.uuid4().hex
    attachment = setup.network.attachment_for(setup.network.current(), [], {})
    result = setup.network.setup(container_id, setup.netns_path, attachment)
    reserved, veths, cached = setup.held()
    assert [str(ip.address.ip) for ip in result.ips] == reserved
    assert len(veths) == 1 and len(cached) == 1

    setup.cnitool("del", container_id)
    assert setup.held() == ([], [], [])
    # The shim's own loopback attachment is the shim's to release.
    setup.network.teardown(container_id, setup.netns_path, attachment)
    assert os.listdir(os.path.join(setup.cache_dir, "results")) == []
