"""subnet.env: the exact lines our flannel plugin reads, written atomically, read back."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from netplugins.flannel import read_subnet_env
from overlay.subnetfile import SubnetEnv, read_previous, write_subnet_file


def _env(masq: bool = True) -> SubnetEnv:
    return SubnetEnv(
        network=ipaddress.IPv4Network("10.244.0.0/16"),
        subnet=ipaddress.IPv4Network("10.244.3.0/24"),
        mtu=1450,
        ip_masq=masq,
    )


def test_render_is_flannels_format() -> None:
    assert _env().render() == (
        "FLANNEL_NETWORK=10.244.0.0/16\n"
        "FLANNEL_SUBNET=10.244.3.1/24\n"
        "FLANNEL_MTU=1450\n"
        "FLANNEL_IPMASQ=true\n"
    )
    assert "FLANNEL_IPMASQ=false" in _env(masq=False).render()


def test_write_then_read_back(tmp_path: Path) -> None:
    path = tmp_path / "run" / "flannel" / "subnet.env"
    write_subnet_file(str(path), _env())
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["subnet.env"]  # no temp file left
    prev = read_previous(str(path))
    assert prev.network == ipaddress.IPv4Network("10.244.0.0/16")
    assert prev.subnet == ipaddress.IPv4Network("10.244.3.0/24")
    # Our CNI plugin reads what we write.
    env = read_subnet_env(str(path))
    assert (env.network, env.subnet, env.mtu, env.ipmasq) == (
        "10.244.0.0/16",
        "10.244.3.0/24",
        1450,
        True,
    )


def test_read_previous_tolerates_absent_or_garbage(tmp_path: Path) -> None:
    assert read_previous(str(tmp_path / "none")).subnet is None
    bad = tmp_path / "bad.env"
    bad.write_text("FLANNEL_SUBNET=garbage\nnonsense\n")
    prev = read_previous(str(bad))
    assert prev.subnet is None and prev.network is None
